"""Persist a ParsedBatch idempotently: valid records become demands, invalid ones are kept.

`persist_batch` is the one place records enter the database. It runs in one transaction, so a
batch is stored whole or not at all; the caller commits Kafka offsets only after it returned.
A redelivered record changes nothing: demands are unique on (source, message_id) and rejected
messages on (topic, partition, offset).

This is the hot path (bench/README.md has the figures), so it avoids the ORM's per-row costs
while keeping its schema: new demands are plain `NewDemand` rows (no Model instances), groups
are upserted in one statement (`grouping`), and demands go in with one `INSERT … ON CONFLICT DO
NOTHING RETURNING` — fed by COPY into a temporary staging table on PostgreSQL, by a multi-row
VALUES list on SQLite. The conflict clause is the idempotence check; RETURNING says which rows are new.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone

from .. import notifications
from ..models import Demand, RejectedMessage, Team
from ..monitoring.flow import record_batch_flow
from ..outbound import ingest as outbound_ingest
from . import grouping
from ..groups.arrivals import settle_arrivals
from ..sla.timers import stamp as stamp_sla
from .grouping import assign_groups
from .parse import ROW_COLUMNS, IncomingMessage, NewDemand, ParsedBatch, current_rules, parse_batch, prepare_demands, store_values
from .rules import RuleBook, RuleChange


@dataclass(slots=True)
class BatchResult:
    created: list[NewDemand] = field(default_factory=list)
    rejected: list[tuple[IncomingMessage, str]] = field(default_factory=list)
    duplicates: int = 0
    notification_ids: list[int] = field(default_factory=list)  # rule assignments to notify live


def persist_batch(batch: list[IncomingMessage] | ParsedBatch, *, rulebook: RuleBook | None = None) -> BatchResult:
    """Parse (unless `batch` is parsed already) and store records in one transaction; return what
    was new and what was rejected.

    New demands go through the rules (priority, tags, category, assignment) and into their group
    before they are inserted, so each is written once; what rules changed is kept on the demand's
    row (`rule_changes`, the first entries of its history).
    """
    parsed = batch if isinstance(batch, ParsedBatch) else parse_batch(batch)  # records: tests and tools
    if parsed.demands is None:
        prepare_demands(parsed, current_rules(rulebook))
    demands, changes = parsed.demands, parsed.changes
    result = BatchResult(rejected=list(parsed.rejected), duplicates=parsed.duplicates)
    now = timezone.now()
    for demand in demands:  # also undoes what an earlier, failed attempt to store them set
        demand.received_at, demand.group_id, demand.pk = now, None, None
    stamp_sla(demands, now)  # policies from the per-process cache: no query per batch
    fingerprints = {id(demand): print_ for demand, (_, _, print_) in zip(demands, parsed.valid, strict=True)}

    with transaction.atomic(savepoint=False):
        if demands:
            assign_groups(demands, fingerprints, now)
            # Concurrent consumers inserting one identity (records not keyed by source:id) are
            # settled by ON CONFLICT: one of them gets the row back, the other counts a duplicate.
            ids = _insert_demands(demands)
            for demand in demands:
                demand.pk = ids.get((demand.source, demand.message_id))
            result.created = [demand for demand in demands if demand.pk is not None]
            result.duplicates += len(demands) - len(result.created)
            settle_arrivals(result.created, fingerprints, now)  # counts, regressions, merges, group triage
            if any(changes.get(id(demand)) for demand in result.created):
                result.notification_ids = _notify_rule_assignments(result.created, changes, now)
                outbound_ingest.post_rule_channels(
                    [(demand.pk, int(change.new), change.rule_name) for demand in result.created
                     for change in changes.get(id(demand), ()) if change.field == "notify"], now=now)
            result.notification_ids += [n.pk for n in outbound_ingest.notify_saved_views(
                [demand.pk for demand in result.created], now=now)]
        record_batch_flow(result, now)  # monitoring: per-minute flow buckets, counted with the batch
        if result.rejected:
            RejectedMessage.objects.bulk_create(
                [
                    RejectedMessage(
                        topic=record.topic,
                        partition=record.partition,
                        offset=record.offset,
                        kafka_timestamp=record.timestamp,
                        key=_key_text(record.key),
                        payload=record.value or b"",
                        reason=reason,
                        received_at=now,
                    )
                    for record, reason in result.rejected
                ],
                ignore_conflicts=True,
            )
    return result


# -- SQL ------------------------------------------------------------------------------------------

# psycopg connections whose temporary staging table exists (see _insert_demands).
_sessions_with_staging: weakref.WeakSet = weakref.WeakSet()


def _default_columns() -> list[tuple[str, object]]:
    """(column, database value) for the columns ingest leaves at their model default."""
    return [
        (f.column, f.get_db_prep_save(f.get_default(), connection))
        for f in Demand._meta.concrete_fields
        if not f.primary_key and f.attname not in ROW_COLUMNS
    ]


def _insert_demands(batch: list[NewDemand]) -> dict[tuple[str, str], int]:
    """Insert what is new; return {(source, message_id): pk} for the rows this call inserted."""
    defaults = _default_columns()
    row_columns = [Demand._meta.get_field(name).column for name in ROW_COLUMNS]
    columns = row_columns + [column for column, _ in defaults]
    default_values = [value for _, value in defaults]
    table = Demand._meta.db_table
    qn = connection.ops.quote_name
    column_list = ", ".join(qn(column) for column in columns)
    conflict = "ON CONFLICT (source, message_id) DO NOTHING RETURNING id, source, message_id"
    inserted: dict[tuple[str, str], int] = {}
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            raw = cursor.cursor  # psycopg's cursor under Django's wrapper: same connection and transaction
            staged = ", ".join(qn(column) for column in row_columns)
            # Per session, invisible to other connections, emptied at every commit. Created until a
            # batch that created it has committed (a rolled-back first batch takes it away again),
            # then known per connection: the statement cost ~3 % of a busy loop.
            session = connection.connection
            if session not in _sessions_with_staging:
                raw.execute(
                    f"CREATE TEMP TABLE IF NOT EXISTS demand_ingest_staging ON COMMIT DELETE ROWS AS "
                    f"SELECT {staged} FROM {table} WITH NO DATA"
                )
                transaction.on_commit(lambda: _sessions_with_staging.add(session))
            # COPY carries only what differs per row; the defaults go into the INSERT once.
            with raw.copy(f"COPY demand_ingest_staging ({staged}) FROM STDIN") as copy:
                for demand in batch:
                    copy.write_row((*demand.row, *store_values(demand)))
            constants = ", ".join(["%s"] * len(default_values))
            raw.execute(
                f"INSERT INTO {table} ({column_list}) SELECT {staged}{', ' if constants else ''}{constants} "
                f"FROM demand_ingest_staging {conflict}",
                default_values,
            )
            # No TRUNCATE (it churns the catalog every batch): rows left from an earlier call in the
            # same transaction are in the table already, so ON CONFLICT skips them and RETURNING
            # names only this call's new rows.
            rows = raw.fetchall()
            inserted.update({(source, message_id): pk for pk, source, message_id in rows})
        else:
            adapt = connection.ops.adapt_datetimefield_value
            placeholders = "(" + ", ".join(["%s"] * len(columns)) + ")"
            chunk = max(1, 30_000 // len(columns))  # SQLite's bound-parameter limit is 32,766
            for start in range(0, len(batch), chunk):
                part = batch[start : start + chunk]
                params = [
                    adapt(value) if isinstance(value, datetime) else value
                    for demand in part
                    for value in (*demand.row, *store_values(demand), *default_values)
                ]
                cursor.execute(
                    f"INSERT INTO {table} ({column_list}) VALUES {', '.join([placeholders] * len(part))} {conflict}", params
                )
                inserted.update({(source, message_id): pk for pk, source, message_id in cursor.fetchall()})
    return inserted



def forget_session_state() -> None:
    """After a failed batch: group ids and staging tables are looked up again (the consume loop)."""
    grouping.known_groups.forget()
    _sessions_with_staging.clear()


def _notify_rule_assignments(created: list[NewDemand], changes: dict[int, list[RuleChange]], now: datetime) -> list[int]:
    """Notifications for what rules assigned (to a person, or to a team's active members), built
    like a person's (`notifications.for_assignment`) and saved in one statement."""
    assigned = [(demand, change) for demand in created for change in changes.get(id(demand), ())
                if change.field in ("assignee", "team")]
    if not assigned:
        return []
    teams = Team.objects.in_bulk({int(change.new) for _, change in assigned if change.field == "team"})
    rows = []
    for demand, change in assigned:
        who = notifications.actor_label(rule_name=change.rule_name)
        if change.field == "assignee":
            rows += notifications.for_assignment(demand=demand, who=who, assignee_id=int(change.new), created_at=now)
        elif int(change.new) in teams:
            rows += notifications.for_assignment(demand=demand, who=who, team=teams[int(change.new)], created_at=now)
    return [n.pk for n in notifications.save(rows)]


def _key_text(key: bytes | None) -> str:
    if key is None:
        return ""
    # Keys are arbitrary bytes; a text column takes neither invalid UTF-8 nor (PostgreSQL) NUL,
    # and one such key must not fail the whole batch over and over.
    return bytes(key)[:1000].decode("utf-8", errors="replace").replace("\x00", "\ufffd")
