"""Per-minute flow buckets: what arrived, was rejected, was resolved, and how long things took.

- `record_batch_flow` runs inside persist_batch's transaction, so a batch's arrivals, rejections
  and ingest latencies are counted exactly when the batch is stored — and not again when Kafka
  re-delivers it (re-delivered demands are not in `created`).
- `rollup_history` runs in the monitor: it walks new DemandEvent rows once (a cursor in the same
  transaction as the counts) and counts resolutions and time to first action.
- `snapshot_backlog` stores open demands by status × priority for the current minute.

All writes are INSERT … ON CONFLICT DO UPDATE statements that PostgreSQL and SQLite both run,
rows sorted by key so concurrent writers lock in one order and cannot deadlock.
"""

from __future__ import annotations

import bisect
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Count, Min, Q

from demands.models import CLOSED_STATUSES, Demand, DemandEvent, RejectedMessage, Status

from . import conf
from .models import BacklogSample, FlowBucket, FlowTotal, LatencyBucket, MonitoringCursor

# Histogram upper bounds in milliseconds; the last bucket (INF_MS) takes everything above.
INF_MS = 2**62
INGEST_BOUNDS_MS: tuple[int, ...] = (
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 300_000, 900_000, 3_600_000, INF_MS,
)
FIRST_ACTION_BOUNDS_MS: tuple[int, ...] = tuple(
    seconds * 1000
    for seconds in (10, 30, 60, 120, 300, 600, 1_800, 3_600, 7_200, 14_400, 28_800, 86_400, 259_200, 604_800)
) + (INF_MS,)
BOUNDS = {LatencyBucket.Metric.INGEST: INGEST_BOUNDS_MS, LatencyBucket.Metric.FIRST_ACTION: FIRST_ACTION_BOUNDS_MS}
OPEN_STATUSES = [status for status in Status.values if status not in CLOSED_STATUSES]


def floor_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


# -- histograms ------------------------------------------------------------------------------------

def bucket_bound(value_ms: float, bounds: Sequence[int]) -> int:
    """The upper bound of the bucket that holds value_ms (bounds are inclusive upper limits)."""
    return bounds[bisect.bisect_left(bounds, max(value_ms, 0))]


def histogram_quantile(q: float, buckets: dict[int, int]) -> float | None:
    """Estimate the q-quantile (0–1) from {upper bound ms: count}, as Prometheus does.

    Linear interpolation inside the bucket that holds the rank; a rank in the overflow bucket
    returns the highest finite bound (we know only that it is above). None without observations.
    """
    total = sum(buckets.values())
    if total <= 0:
        return None
    rank = q * total
    cumulative = 0
    lower = 0
    for bound in sorted(buckets):
        count = buckets[bound]
        if count and cumulative + count >= rank:
            if bound >= INF_MS:
                return float(lower)
            return lower + (bound - lower) * ((rank - cumulative) / count)
        cumulative += count
        lower = bound if bound < INF_MS else lower
    return float(lower)


def histogram_rows(minute: datetime, metric: str, values_ms: Iterable[float]) -> list[tuple]:
    counts: Counter[int] = Counter()
    sums: Counter[int] = Counter()
    bounds = BOUNDS[metric]
    for value in values_ms:
        bound = bucket_bound(value, bounds)
        counts[bound] += 1
        sums[bound] += int(max(value, 0))
    return [(minute, metric, bound, counts[bound], sums[bound]) for bound in counts]


# -- upserts ---------------------------------------------------------------------------------------

def upsert(model, key_fields: Sequence[str], value_fields: Sequence[str], rows: list[tuple], *, add: bool) -> None:
    """INSERT rows (key fields then value fields); on a key conflict add to (add=True) or replace the values."""
    if not rows:
        return
    rows = sorted(rows, key=lambda row: tuple(str(part) for part in row[: len(key_fields)]))
    opts = model._meta
    fields = [opts.get_field(name) for name in (*key_fields, *value_fields)]
    qn = connection.ops.quote_name
    table = qn(opts.db_table)
    columns = ", ".join(qn(field.column) for field in fields)
    conflict = ", ".join(qn(opts.get_field(name).column) for name in key_fields)
    if add:
        updates = ", ".join(f"{qn(f.column)} = {table}.{qn(f.column)} + excluded.{qn(f.column)}" for f in fields[len(key_fields):])
    else:
        updates = ", ".join(f"{qn(f.column)} = excluded.{qn(f.column)}" for f in fields[len(key_fields):])
    placeholder = "(" + ", ".join(["%s"] * len(fields)) + ")"
    with connection.cursor() as cursor:
        for start in range(0, len(rows), 200):
            chunk = rows[start : start + 200]
            params = [
                field.get_db_prep_save(value, connection) for row in chunk for field, value in zip(fields, row, strict=True)
            ]
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES {', '.join([placeholder] * len(chunk))} "
                f"ON CONFLICT ({conflict}) DO UPDATE SET {updates}",
                params,
            )


def add_flow(rows: list[tuple[datetime, str, str, str, int]]) -> None:
    """rows: (minute, kind, type, source, count), added to what is there."""
    upsert(FlowBucket, ["minute", "kind", "type", "source"], ["count"], rows, add=True)


def add_latency(rows: list[tuple]) -> None:
    """rows: (minute, metric, le_ms, count, sum_ms), added to what is there."""
    upsert(LatencyBucket, ["minute", "metric", "le_ms"], ["count", "sum_ms"], rows, add=True)


# -- the ingest hook ---------------------------------------------------------------------------------

def _type_source_of(payload: bytes | None) -> tuple[str, str]:
    """Best effort for a rejected message: its type and source if it is a JSON object that has them."""
    try:
        data = json.loads(payload or b"")
    except (ValueError, RecursionError):  # not JSON, bad UTF-8, nested too deeply
        return ("", "")
    if not isinstance(data, dict):
        return ("", "")
    return (_storable_label(data.get("type")), _storable_label(data.get("source")))


def _storable_label(value: object) -> str:
    """A rejected message's type or source as a bucket label: a NUL or a lone surrogate (legal in
    JSON escapes) cannot go into a PostgreSQL text column and must not fail the batch; line breaks
    and other control characters would end up in alert titles, e-mail subjects and log lines."""
    if not isinstance(value, str):
        return ""
    return value[:64].translate(_CONTROL_CHARACTERS).encode("utf-8", "replace").decode("utf-8")


_CONTROL_CHARACTERS = {code: "\ufffd" for code in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]}


def _new_rejections(rejected: list) -> list:
    """Rejected records not stored before: a batch retried after a dead-letter failure, or
    re-delivered after a crash, holds the same bad records again and must not count them twice."""
    positions: dict[tuple[str, int | None], set[int]] = {}
    for record, _reason in rejected:
        if record.offset is not None:
            positions.setdefault((record.topic, record.partition), set()).add(record.offset)
    if not positions:
        return rejected
    known = Q()
    for (topic, partition), offsets in positions.items():
        known |= Q(topic=topic, partition=partition, offset__in=offsets)
    stored = set(RejectedMessage.objects.filter(known).values_list("topic", "partition", "offset"))
    return [item for item in rejected if (item[0].topic, item[0].partition, item[0].offset) not in stored]


def record_batch_flow(result, now: datetime) -> None:
    """Count a batch (an ingest.BatchResult) inside its transaction, before its rejected records are stored."""
    minute = floor_minute(now)
    arrivals = Counter((demand.type, demand.source) for demand in result.created)
    rejections = Counter(_type_source_of(record.value) for record, _reason in _new_rejections(result.rejected))
    add_flow(
        [(minute, FlowBucket.Kind.ARRIVAL, kind, source, n) for (kind, source), n in arrivals.items()]
        + [(minute, FlowBucket.Kind.REJECTION, kind, source, n) for (kind, source), n in rejections.items()]
    )
    latencies = [
        (demand.received_at - demand.kafka_timestamp).total_seconds() * 1000
        for demand in result.created
        if demand.kafka_timestamp is not None
    ]
    add_latency(histogram_rows(minute, LatencyBucket.Metric.INGEST, latencies))


# -- roll-up of triage history -------------------------------------------------------------------------

@dataclass(slots=True)
class RollupResult:
    events: int = 0
    resolutions: int = 0
    first_actions: int = 0


def rollup_history(*, now: datetime, limit: int = 5000) -> RollupResult:
    """Count resolutions and times to first action from history events not yet counted.

    A resolution is a status event into a closed status (resolved, rejected, duplicate): the demand
    leaves the backlog. A demand's first action is its first history event that is not a rule
    applied at ingest; its time is the demand's first_action_at − received_at. Events younger than
    the settle time wait for the next run, so one that commits late is not skipped.
    """
    settle_before = now - timedelta(seconds=conf.get("MONITORING_ROLLUP_SETTLE_SECONDS"))
    result = RollupResult()
    with transaction.atomic():
        cursor, _ = MonitoringCursor.objects.select_for_update().get_or_create(name="history")
        rows = list(
            DemandEvent.objects.filter(id__gt=cursor.position)
            .order_by("id")
            .values("id", "demand_id", "kind", "actor_id", "new_value", "created_at",
                    "demand__type", "demand__source", "demand__received_at", "demand__first_action_at")[:limit]
        )
        settled = []
        for row in rows:
            if row["created_at"] > settle_before:
                break
            settled.append(row)
        if not settled:
            return result
        # Time to first action is about people: what rules and alerts did is not counted.
        action_rows = [row for row in settled if row["actor_id"] is not None]
        first_event_of = dict(
            DemandEvent.objects.filter(demand_id__in={row["demand_id"] for row in action_rows})
            .filter(actor__isnull=False)
            .values("demand_id")
            .annotate(first=Min("id"))
            .order_by()
            .values_list("demand_id", "first")
        )
        resolutions: Counter = Counter()
        first_actions: dict[datetime, list[float]] = {}
        for row in settled:
            minute = floor_minute(row["created_at"])
            if row["kind"] == DemandEvent.Kind.STATUS and row["new_value"] in CLOSED_STATUSES:
                resolutions[(minute, row["demand__type"], row["demand__source"])] += 1
            if row["actor_id"] is not None and first_event_of.get(row["demand_id"]) == row["id"]:
                acted_at = row["demand__first_action_at"] or row["created_at"]
                first_actions.setdefault(minute, []).append((acted_at - row["demand__received_at"]).total_seconds() * 1000)
        add_flow([(minute, FlowBucket.Kind.RESOLUTION, kind, source, n) for (minute, kind, source), n in resolutions.items()])
        add_latency(
            [row for minute, values in first_actions.items() for row in histogram_rows(minute, LatencyBucket.Metric.FIRST_ACTION, values)]
        )
        cursor.position = settled[-1]["id"]
        cursor.updated_at = now
        cursor.save(update_fields=["position", "updated_at"])
        result.events = len(settled)
        result.resolutions = sum(resolutions.values())
        result.first_actions = sum(len(values) for values in first_actions.values())
    return result


# -- backlog -----------------------------------------------------------------------------------------

def backlog_now() -> dict[tuple[str, str], int]:
    """Open live demands by (status, priority), counted now (the partial index on status narrows
    it to open ones; archived noise is not backlog)."""
    rows = (
        Demand.objects.filter(status__in=OPEN_STATUSES, archived_at__isnull=True)
        .values("status", "priority")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {(row["status"], row["priority"]): row["n"] for row in rows}


def snapshot_backlog(*, now: datetime) -> dict[tuple[str, str], int]:
    """Store the backlog as this minute's sample (the last snapshot in a minute wins) and return it."""
    counts = backlog_now()
    minute = floor_minute(now)
    with transaction.atomic():
        BacklogSample.objects.filter(minute=minute).delete()  # a status × priority that emptied must read 0
        upsert(
            BacklogSample, ["minute", "status", "priority"], ["count"],
            [(minute, status, priority, n) for (status, priority), n in counts.items() if n], add=False,
        )
    return counts


def prune(*, now: datetime) -> None:
    """Forget buckets and samples past their retention; alerts are history and are kept."""
    from .heartbeat import prune_heartbeats
    from .models import ClusterSample, LagSample

    keep_after = now - timedelta(days=conf.get("MONITORING_RETENTION_DAYS"))
    prune_flow(before=keep_after)  # folded into the counters' totals: /metrics counters never go down
    LatencyBucket.objects.filter(minute__lt=keep_after).delete()
    BacklogSample.objects.filter(minute__lt=keep_after).delete()
    LagSample.objects.filter(minute__lt=now - timedelta(days=conf.get("MONITORING_LAG_RETENTION_DAYS"))).delete()
    ClusterSample.objects.filter(minute__lt=now - timedelta(days=conf.get("MONITORING_LAG_RETENTION_DAYS"))).delete()
    prune_heartbeats(now=now)


FOLD_CHUNK = 5000


def prune_flow(*, before: datetime) -> int:
    """Delete flow buckets older than `before`, adding their counts to FlowTotal in the same
    transaction (see counters.py: /metrics counters never go down). Returns rows pruned."""
    pruned = 0
    while True:
        with transaction.atomic():
            rows = list(
                FlowBucket.objects.select_for_update().filter(minute__lt=before)
                .order_by("minute", "kind", "type", "source").values_list("pk", "kind", "type", "source", "count")[:FOLD_CHUNK]
            )
            if not rows:
                return pruned
            sums: Counter = Counter()
            for _pk, kind, type_, source, count in rows:
                sums[(kind, type_, source)] += count
            upsert(FlowTotal, ["kind", "type", "source"], ["count"], [(*key, n) for key, n in sums.items()], add=True)
            FlowBucket.objects.filter(pk__in=[row[0] for row in rows]).delete()
            pruned += len(rows)
