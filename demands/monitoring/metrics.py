"""Reads over the monitoring data: windows of flow buckets, latency percentiles, chart series, the summary.

Pages, the Prometheus collector and alert rules all read through these, so "arrivals in the last
5 minutes" means the same everywhere: the current (partial) minute and the 4 before it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Max, Sum
from django.utils.translation import pgettext

from demands.models import Priority, Status

from . import conf
from .flow import OPEN_STATUSES, backlog_now, floor_minute, histogram_quantile
from .heartbeat import consumer_states
from .lag import LagOverview, lag_overview
from .models import Alert, AlertRule, BacklogSample, FlowBucket, LagSample, LatencyBucket, MonitoringCursor

SEVERITY_RANK = {AlertRule.Severity.INFO: 0, AlertRule.Severity.WARNING: 1, AlertRule.Severity.CRITICAL: 2}


def window_start(now: datetime, minutes: int) -> datetime:
    """First minute of a window of `minutes` minutes that ends with the current one."""
    return floor_minute(now) - timedelta(minutes=max(minutes, 1) - 1)


# Types and sources never contain spaces (see schema), so "type / source" splits back unambiguously.
KEY_SEPARATOR = " / "


def group_key(group_by: str, kind: str, source: str) -> str:
    """How spike and rejection-ratio rules name what they count; "-" for a rejected message without one."""
    if group_by == AlertRule.GroupBy.TYPE:
        return kind or "-"
    if group_by == AlertRule.GroupBy.SOURCE:
        return source or "-"
    if group_by == AlertRule.GroupBy.TYPE_SOURCE:
        return f"{kind or '-'}{KEY_SEPARATOR}{source or '-'}"
    return "all"


def flow_totals(
    *, kind: str, start: datetime, group_by: str = "all", match_type: str = "", match_source: str = ""
) -> dict[str, int]:
    """Counts of one kind since `start`, summed per group key (see group_key)."""
    rows = FlowBucket.objects.filter(kind=kind, minute__gte=start)
    if match_type:
        rows = rows.filter(type=match_type)
    if match_source:
        rows = rows.filter(source=match_source)
    totals: dict[str, int] = defaultdict(int)
    for row in rows.values("type", "source").annotate(n=Sum("count")).order_by():
        totals[group_key(group_by, row["type"], row["source"])] += row["n"]
    return dict(totals)


def latency_quantiles(*, metric: str, start: datetime) -> tuple[float | None, float | None, int]:
    """(p50 ms, p95 ms, observations) since `start`, merged from per-minute histograms."""
    buckets = {
        row["le_ms"]: row["n"]
        for row in LatencyBucket.objects.filter(metric=metric, minute__gte=start)
        .values("le_ms").annotate(n=Sum("count")).order_by()
    }
    return histogram_quantile(0.5, buckets), histogram_quantile(0.95, buckets), sum(buckets.values())


def human_duration(ms: float | None) -> str:
    """120 ms, 1.5 s, 4.2 min, 3.1 h, 2.0 d — for tables and the header; "—" when unknown."""
    if ms is None:
        return "—"
    seconds = ms / 1000
    if seconds < 1:
        return f"{ms:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def drain_text(overview: LagOverview | None) -> str:
    if overview is None:
        return "—"
    drain = overview.drain
    # In the language active when rendered (pages, and each reader's language for pushed fragments).
    return {
        "drained": pgettext("lag", "caught up"),
        "draining": f"~{human_duration((drain.seconds or 0) * 1000)}",
        "keeping_up": pgettext("lag", "keeping up"),
        "growing": pgettext("lag", "growing"),
        "stalled": pgettext("lag", "stalled"),
    }.get(drain.state, pgettext("lag", "unknown"))


# -- chart series ------------------------------------------------------------------------------------

def _minutes(start: datetime, end: datetime) -> list[datetime]:
    count = int((end - start).total_seconds() // 60) + 1
    return [start + timedelta(minutes=i) for i in range(max(count, 0))]


def chart_data(*, now: datetime, minutes: int = 60, group: str | None = None) -> dict:
    """Every chart's series on one x axis (unix seconds per minute), as uPlot wants them.

    Flow counts are 0 for minutes without buckets; samples (backlog, lag) and percentiles are
    null where nothing was recorded, so gaps (a stopped monitor) show as gaps, not as zeros.
    """
    group = group or settings.KAFKA_CONSUMER_GROUP
    start, end = window_start(now, minutes), floor_minute(now)
    axis = _minutes(start, end)
    index = {minute: i for i, minute in enumerate(axis)}
    size = len(axis)

    flow = {kind: [0] * size for kind in FlowBucket.Kind.values}
    for row in FlowBucket.objects.filter(minute__gte=start).values("minute", "kind").annotate(n=Sum("count")).order_by():
        if row["minute"] in index:
            flow[row["kind"]][index[row["minute"]]] = row["n"]

    latency = {}
    for metric in LatencyBucket.Metric.values:
        per_minute: dict[datetime, dict[int, int]] = defaultdict(dict)
        for row in LatencyBucket.objects.filter(metric=metric, minute__gte=start).values("minute", "le_ms", "count"):
            per_minute[row["minute"]][row["le_ms"]] = per_minute[row["minute"]].get(row["le_ms"], 0) + row["count"]
        p50, p95 = [None] * size, [None] * size
        for minute, buckets in per_minute.items():
            if minute in index:
                p50[index[minute]] = _seconds(histogram_quantile(0.5, buckets))
                p95[index[minute]] = _seconds(histogram_quantile(0.95, buckets))
        latency[metric] = {"p50": p50, "p95": p95}

    backlog = {status: [None] * size for status in OPEN_STATUSES}
    backlog["urgent"] = [None] * size
    for row in BacklogSample.objects.filter(minute__gte=start).values("minute", "status", "priority", "count"):
        i = index.get(row["minute"])
        if i is None:
            continue
        for status in OPEN_STATUSES:  # a sampled minute: statuses without rows are 0, not unknown
            backlog[status][i] = backlog[status][i] or 0
        backlog["urgent"][i] = backlog["urgent"][i] or 0
        if row["status"] in backlog:
            backlog[row["status"]][i] += row["count"]
        if row["priority"] == Priority.URGENT:
            backlog["urgent"][i] += row["count"]

    lag = [None] * size
    for row in LagSample.objects.filter(group=group, minute__gte=start).values("minute").annotate(n=Sum("lag")).order_by():
        if row["minute"] in index:
            lag[index[row["minute"]]] = row["n"]

    return {
        "t": [int(minute.timestamp()) for minute in axis],
        "arrivals": flow[FlowBucket.Kind.ARRIVAL],
        "resolutions": flow[FlowBucket.Kind.RESOLUTION],
        "rejections": flow[FlowBucket.Kind.REJECTION],
        "ingest_p50": latency[LatencyBucket.Metric.INGEST]["p50"],
        "ingest_p95": latency[LatencyBucket.Metric.INGEST]["p95"],
        "first_action_p50": latency[LatencyBucket.Metric.FIRST_ACTION]["p50"],
        "first_action_p95": latency[LatencyBucket.Metric.FIRST_ACTION]["p95"],
        "backlog": backlog,
        "lag": lag,
        "group": group,
    }


def _seconds(ms: float | None) -> float | None:
    return None if ms is None else round(ms / 1000, 3)


def top_flows(*, now: datetime, minutes: int = 60, limit: int = 15) -> list[dict]:
    """Busiest type/source pairs in the window with their arrivals, rejections and resolutions."""
    table: dict[tuple[str, str], dict] = {}
    rows = FlowBucket.objects.filter(minute__gte=window_start(now, minutes)).values("kind", "type", "source").annotate(n=Sum("count")).order_by()
    for row in rows:
        entry = table.setdefault(
            (row["type"], row["source"]),
            {"type": row["type"], "source": row["source"], **dict.fromkeys(FlowBucket.Kind.values, 0)},
        )
        entry[row["kind"]] += row["n"]
    return sorted(table.values(), key=lambda e: (-e["arrival"], -e["rejection"], e["type"], e["source"]))[:limit]


def backlog_matrix(counts: dict[tuple[str, str], int]) -> dict:
    """Open demands as rows per status with a column per priority, plus totals, for the page."""
    priorities = list(Priority.values)
    rows = []
    for status in OPEN_STATUSES:
        cells = [counts.get((status, priority), 0) for priority in priorities]
        rows.append({"status": status, "label": Status(status).label, "cells": cells, "total": sum(cells)})
    column_totals = [sum(row["cells"][i] for row in rows) for i in range(len(priorities))]
    return {
        "priorities": [(p, Priority(p).label) for p in priorities],
        "rows": rows,
        "column_totals": column_totals,
        "total": sum(column_totals),
    }


# -- the compact summary -------------------------------------------------------------------------------

@dataclass(slots=True)
class Summary:
    now: datetime
    arrivals_last_minute: int
    arrivals_per_minute: float  # average over the last 5 minutes
    rejections_5m: int
    backlog_total: int
    backlog_urgent: int
    lag: LagOverview | None
    consumers_alive: int
    consumers_dead: int
    open_alerts: int
    worst_severity: str
    ingest_p95_ms: float | None
    monitor_seen_at: datetime | None

    @property
    def monitor_stale(self) -> bool:
        if self.monitor_seen_at is None:
            return True
        return (self.now - self.monitor_seen_at).total_seconds() > 3 * conf.get("MONITORING_TICK_SECONDS") + 30

    @property
    def ingest_p95_text(self) -> str:
        return human_duration(self.ingest_p95_ms)

    @property
    def drain_text(self) -> str:
        return drain_text(self.lag)

    @property
    def health(self) -> str:
        """ok | warning | critical: what the header's dot shows."""
        if self.worst_severity == AlertRule.Severity.CRITICAL or self.consumers_dead:
            return "critical"
        if self.open_alerts or self.monitor_stale or (self.lag is not None and self.lag.drain.never):
            return "warning"
        return "ok"


def latest_backlog(*, now: datetime) -> dict[tuple[str, str], int]:
    """The monitor's latest backlog sample if recent (cheap), else counted now."""
    latest = BacklogSample.objects.aggregate(m=Max("minute"))["m"]
    if latest is not None and now - latest <= timedelta(minutes=2):
        return {(row.status, row.priority): row.count for row in BacklogSample.objects.filter(minute=latest)}
    return backlog_now()


def summary(*, now: datetime, group: str | None = None) -> Summary:
    group = group or settings.KAFKA_CONSUMER_GROUP
    five = window_start(now, 5)
    arrivals = FlowBucket.objects.filter(kind=FlowBucket.Kind.ARRIVAL, minute__gte=five).values("minute").annotate(n=Sum("count")).order_by()
    arrivals_by_minute = {row["minute"]: row["n"] for row in arrivals}
    rejections = FlowBucket.objects.filter(kind=FlowBucket.Kind.REJECTION, minute__gte=five).aggregate(n=Sum("count"))["n"] or 0
    backlog = latest_backlog(now=now)
    states = [state for _hb, state in consumer_states(now=now)]
    open_alerts = list(Alert.objects.filter(resolved_at__isnull=True).values_list("severity", flat=True))
    _p50, p95, _n = latency_quantiles(metric=LatencyBucket.Metric.INGEST, start=five)
    tick = MonitoringCursor.objects.filter(name="tick").first()
    return Summary(
        now=now,
        arrivals_last_minute=arrivals_by_minute.get(floor_minute(now), 0),
        arrivals_per_minute=round(sum(arrivals_by_minute.values()) / 5, 1),
        rejections_5m=rejections,
        backlog_total=sum(backlog.values()),
        backlog_urgent=sum(n for (_status, priority), n in backlog.items() if priority == Priority.URGENT),
        lag=lag_overview(group=group, now=now),
        consumers_alive=states.count("alive"),
        consumers_dead=states.count("dead"),
        open_alerts=len(open_alerts),
        worst_severity=max(open_alerts, key=lambda s: SEVERITY_RANK.get(s, 0), default=""),
        ingest_p95_ms=p95,
        monitor_seen_at=tick.updated_at if tick else None,
    )
