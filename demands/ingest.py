"""Persist a batch of Kafka records idempotently: valid ones become demands, invalid ones are kept.

`persist_batch` is the one place records enter the database. It runs in one transaction, so a
batch is stored whole or not at all; the caller commits Kafka offsets only after it returned.
A redelivered record changes nothing: demands are unique on (source, message_id) and rejected
messages on (topic, partition, offset).

This is the hot path (bench/README.md has the figures), so it avoids the ORM's per-row costs
while keeping its schema: new demands are plain `NewDemand` rows (no Model instances), groups
are upserted in one statement, and demands go in with one `INSERT … ON CONFLICT DO NOTHING
RETURNING` — fed by COPY into a temporary staging table on PostgreSQL, by a multi-row VALUES
list on SQLite. The conflict clause is the idempotence check; RETURNING says which rows are new.
"""

from __future__ import annotations

import json
import operator
import weakref
from collections import defaultdict
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from . import schema
from .models import Demand, DemandGroup, Notification, Priority, RejectedMessage, Status, Team
from .monitoring.flow import record_batch_flow
from .rules import RuleBook, RuleChange, apply_rules, fingerprint

try:  # orjson parses 3-5× faster than the stdlib; every rejection reason still comes from schema
    import orjson
except ImportError:  # pragma: no cover
    orjson = None


@dataclass(slots=True)
class IncomingMessage:
    """One Kafka record, detached from the client library so tests and HTTP ingest can build them."""

    topic: str
    partition: int | None
    offset: int | None
    value: bytes | None
    key: bytes | None = None
    timestamp: datetime | None = None


@dataclass(slots=True)
class NewDemand:
    """A demand on its way in: the columns ingest sets, without a Model instance's per-row cost.
    Rules and grouping work on it as on a Demand; `to_model()` makes the Demand for rendering."""

    source: str
    message_id: str
    type: str
    content: str
    occurred_at: datetime
    priority: str
    tags: list
    extra: dict
    kafka_topic: str
    kafka_partition: int | None
    kafka_offset: int | None
    kafka_timestamp: datetime | None
    received_at: datetime
    category: str = ""
    assignee_id: int | None = None
    team_id: int | None = None
    group_id: int | None = None
    rule_changes: list = field(default_factory=list)  # what apply_rules changed, as stored (see Demand)
    pk: int | None = None
    row: tuple | None = None  # database values of STATIC_COLUMNS, built once (in the parser thread)

    def to_model(self) -> Demand:
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("pk", "row")}
        return Demand(pk=self.pk, status=Status.NEW, updated_at=self.received_at, **values)


# NewDemand's columns in insert order; the other columns take their model default. Those set when
# the batch is stored come last; the rest (STATIC_COLUMNS) are ready before, in `NewDemand.row`.
STORE_COLUMNS = ("received_at", "group_id")
STATIC_COLUMNS = tuple(f.name for f in fields(NewDemand) if f.name not in ("pk", "row", *STORE_COLUMNS))
ROW_COLUMNS = STATIC_COLUMNS + STORE_COLUMNS
JSON_COLUMNS = {"tags", "extra", "rule_changes"}


@dataclass(slots=True)
class BatchResult:
    created: list[NewDemand] = field(default_factory=list)
    rejected: list[tuple[IncomingMessage, str]] = field(default_factory=list)
    duplicates: int = 0
    notification_ids: list[int] = field(default_factory=list)  # rule assignments to notify live


_default_rulebook = RuleBook()

# How precisely a group's last_seen follows its newest member (see _count_group_members).
LAST_SEEN_STEP = timedelta(seconds=10)


def parse_record(raw: bytes | None) -> schema.DemandMessage:
    """`schema.parse_demand`, with orjson in front for the common case. Anything orjson refuses or
    may read differently (floats, huge integers) goes through the reference parser, so accepted
    values and every rejection reason are exactly those of schema.parse_demand."""
    if orjson is not None and raw is not None and len(raw) <= schema.MAX_MESSAGE_BYTES:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
        else:
            if data.__class__ is dict:
                try:
                    message = schema.demand_from_dict(data)
                except schema.InvalidMessage:
                    pass  # rare: the reference parser gives the reason
                else:
                    # Required fields are strings (a number there is refused either way), so
                    # numbers in an accepted demand are in `extra`, priority and tags included.
                    if not (message.extra and _has_number(message.extra)):
                        return message
    return schema.parse_demand(raw)


def _has_number(value) -> bool:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return True
    if isinstance(value, dict):
        return any(_has_number(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_number(item) for item in value)
    return False


def _dumps(value) -> str:
    if orjson is not None:
        try:
            return orjson.dumps(value).decode()
        except TypeError:  # integers beyond 64 bits
            pass
    return json.dumps(value, ensure_ascii=False)


def new_demand(message: schema.DemandMessage, record: IncomingMessage, now: datetime) -> NewDemand:
    return NewDemand(
        source=message.source,
        message_id=message.message_id,
        type=message.type,
        content=message.content,
        occurred_at=message.occurred_at,
        priority=message.priority or Priority.NORMAL,
        tags=message.tags,
        extra=message.extra,
        kafka_topic=record.topic,
        kafka_partition=record.partition,
        kafka_offset=record.offset,
        kafka_timestamp=record.timestamp,
        received_at=now,
    )


@dataclass(slots=True)
class ParsedBatch:
    """Records after the work that needs no database: parsed, checked, de-duplicated within the
    batch, fingerprinted and — when parse_batch was given the rules — made into demands with the
    rules applied. Storing it changes only what storing sets (received_at, group, pk), so a failed
    batch is retried from the same ParsedBatch (the consume loop prepares the next batch in a
    worker thread while the database stores this one)."""

    records: list[IncomingMessage]
    valid: list[tuple[IncomingMessage, schema.DemandMessage, str]] = field(default_factory=list)  # + fingerprint
    rejected: list[tuple[IncomingMessage, str]] = field(default_factory=list)
    duplicates: int = 0
    demands: list[NewDemand] | None = None  # with the rules applied (parse_batch(records, rules))
    changes: dict[int, list[RuleChange]] = field(default_factory=dict)  # id(demand) → what rules changed


def parse_batch(records: list[IncomingMessage], rules: list | None = None) -> ParsedBatch:
    """The database-free part of a batch. With `rules` (a RuleBook's compiled rules) the demands
    are built and the rules applied here too."""
    parsed = ParsedBatch(records=records)
    seen: set[tuple[str, str]] = set()
    for record in records:
        try:
            message = parse_record(record.value)
        except schema.InvalidMessage as exc:
            parsed.rejected.append((record, exc.reason))
            continue
        identity = (message.source, message.message_id)
        if identity in seen:
            parsed.duplicates += 1  # the same demand twice in one batch: the first one wins
            continue
        seen.add(identity)
        parsed.valid.append((record, message, fingerprint(type=message.type, source=message.source, content=message.content)))
    if rules is not None:
        _prepare_demands(parsed, rules)
    return parsed


def _prepare_demands(parsed: ParsedBatch, rules: list) -> None:
    """The batch's demands, with the rules applied and their rows built (received_at and the
    group are set when it is stored)."""
    parsed.demands = [new_demand(message, record, None) for record, message, _ in parsed.valid]
    parsed.changes = {id(demand): _apply_rules(demand, rules) for demand in parsed.demands} if rules else {}
    for demand in parsed.demands:
        demand.row = _static_row(demand)


def _apply_rules(demand: NewDemand, rules: list) -> list[RuleChange]:
    changes = apply_rules(demand, rules)
    demand.rule_changes = [
        {"rule_id": c.rule_id, "rule": c.rule_name, "field": c.field, "old": c.old, "new": c.new} for c in changes
    ]
    return changes


def current_rules(rulebook: RuleBook | None = None) -> list:
    """The rules ingest applies now (reloaded when they change; see RuleBook)."""
    return (rulebook or _default_rulebook).rules()


def persist_batch(batch: list[IncomingMessage] | ParsedBatch, *, rulebook: RuleBook | None = None) -> BatchResult:
    """Parse (unless `batch` is parsed already) and store records in one transaction; return what
    was new and what was rejected.

    New demands go through the rules (priority, tags, category, assignment) and into their group
    before they are inserted, so each is written once; what rules changed is kept on the demand's
    row (`rule_changes`, the first entries of its history).
    """
    parsed = batch if isinstance(batch, ParsedBatch) else parse_batch(batch)
    if parsed.demands is None:
        _prepare_demands(parsed, current_rules(rulebook))
    demands, changes = parsed.demands, parsed.changes
    result = BatchResult(rejected=list(parsed.rejected), duplicates=parsed.duplicates)
    now = timezone.now()
    for demand in demands:  # also undoes what an earlier, failed attempt to store them set
        demand.received_at, demand.group_id, demand.pk = now, None, None
    fingerprints = {id(demand): print_ for demand, (_, _, print_) in zip(demands, parsed.valid, strict=True)}

    with transaction.atomic(savepoint=False):
        if demands:
            _assign_groups(demands, fingerprints, now)
            # Concurrent consumers inserting one identity (records not keyed by source:id) are
            # settled by ON CONFLICT: one of them gets the row back, the other counts a duplicate.
            ids = _insert_demands(demands)
            for demand in demands:
                demand.pk = ids.get((demand.source, demand.message_id))
            result.created = [demand for demand in demands if demand.pk is not None]
            result.duplicates += len(demands) - len(result.created)
            _count_group_members(result.created, now)
            if any(changes.get(id(demand)) for demand in result.created):
                result.notification_ids = _notify_rule_assignments(result.created, changes, now)
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


_static_values = operator.attrgetter(*STATIC_COLUMNS)  # one C call for the row's values
_JSON_INDEXES = [index for index, name in enumerate(STATIC_COLUMNS) if name in JSON_COLUMNS]


def _static_row(demand: NewDemand) -> tuple:
    row = list(_static_values(demand))
    for index in _JSON_INDEXES:
        row[index] = _dumps(row[index])
    return tuple(row)


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
                    copy.write_row((*demand.row, demand.received_at, demand.group_id))
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
                    for value in (*demand.row, demand.received_at, demand.group_id, *default_values)
                ]
                cursor.execute(
                    f"INSERT INTO {table} ({column_list}) VALUES {', '.join([placeholders] * len(part))} {conflict}", params
                )
                inserted.update({(source, message_id): pk for pk, source, message_id in cursor.fetchall()})
    return inserted


class KnownGroups:
    """fingerprint → id of groups this process has seen committed, so a batch asks the database
    only about fingerprints it has not met before (most batches: none).

    Entries are learned after the commit that made or read them (a rolled-back batch teaches
    nothing). A group deleted in this process is forgotten through a signal (apps.py); one deleted
    elsewhere makes the next batch that names it fail its foreign-key check at commit, and every
    failed batch forgets everything (ConsumeLoop), so the retry reads the database again.
    """

    def __init__(self, limit: int = 100_000):
        self.limit = limit
        self.ids: dict[str, int] = {}

    def learn(self, learned: dict[str, int]) -> None:
        if len(self.ids) + len(learned) > self.limit:
            self.ids.clear()  # a crude bound: the busy groups come back within a batch or two
        self.ids.update(learned)

    def forget(self, *_args, **_kwargs) -> None:
        self.ids.clear()


known_groups = KnownGroups()


def forget_session_state() -> None:
    """After a failed batch: group ids and staging tables are looked up again (the consume loop)."""
    known_groups.forget()
    _sessions_with_staging.clear()


def _assign_groups(demands: list[NewDemand], fingerprints: dict[int, str], now: datetime) -> None:
    """Put each demand in the group of its fingerprint. Existing groups are only read (no row
    written twice per batch); missing ones are inserted. Counts are added after the demands'
    insert, for the demands that were new."""
    by_fingerprint: dict[str, list[NewDemand]] = defaultdict(list)
    for demand in demands:
        by_fingerprint[fingerprints[id(demand)]].append(demand)
    known = known_groups.ids
    group_ids = {fp: known[fp] for fp in by_fingerprint if fp in known}
    unknown = [fp for fp in by_fingerprint if fp not in group_ids]
    if unknown:
        group_ids.update(DemandGroup.objects.filter(fingerprint__in=unknown).values_list("fingerprint", "id"))
    missing = sorted(fp for fp in unknown if fp not in group_ids)  # one lock order for every consumer
    if missing:
        table = DemandGroup._meta.db_table
        stamp = connection.ops.adapt_datetimefield_value(now)
        params = []
        for fp in missing:
            first = by_fingerprint[fp][0]
            params += [fp, first.type, first.source, first.content[:200], stamp, stamp]
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (fingerprint, type, source, title, count, first_seen, last_seen) "
                f"VALUES {', '.join(['(%s, %s, %s, %s, 0, %s, %s)'] * len(missing))} ON CONFLICT (fingerprint) DO NOTHING",
                params,
            )
        # Ours, or a concurrent consumer's that won the race: read them back either way.
        group_ids.update(DemandGroup.objects.filter(fingerprint__in=missing).values_list("fingerprint", "id"))
    if unknown:
        learned = {fp: group_ids[fp] for fp in unknown}
        transaction.on_commit(lambda: known_groups.learn(learned))
    for fp, members in by_fingerprint.items():
        for demand in members:
            demand.group_id = group_ids[fp]


def _count_group_members(created: list[NewDemand], now: datetime) -> None:
    """Add each group's new members in one UPDATE: FROM unnest(ids, counts) on PostgreSQL, FROM
    (VALUES …) on SQLite (≥ 3.33)."""
    per_group: dict[int, int] = defaultdict(int)
    for demand in created:
        per_group[demand.group_id] += 1
    if not per_group:
        return
    table = DemandGroup._meta.db_table
    ids = sorted(per_group)  # one lock order for every consumer
    adapt = connection.ops.adapt_datetimefield_value
    # last_seen moves in steps of LAST_SEEN_STEP: between steps the indexed column keeps its value,
    # so PostgreSQL rewrites a busy group's row in place (a HOT update) instead of adding an entry
    # to each of its indexes every batch.
    update = (
        f"UPDATE {table} SET count = {table}.count + v.n, "
        f"last_seen = CASE WHEN {table}.last_seen < %s THEN %s ELSE {table}.last_seen END "
    )
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Two array parameters: the statement's text is the same every batch, and binding
            # stays two values however many groups the batch touched.
            cursor.execute(
                update + f"FROM unnest(%s::bigint[], %s::integer[]) AS v(id, n) WHERE {table}.id = v.id",
                [adapt(now - LAST_SEEN_STEP), adapt(now), ids, [per_group[group_id] for group_id in ids]],
            )
        else:
            values = ", ".join(["(%s, %s)"] * len(ids))
            cursor.execute(
                # VALUES columns are column1, column2 (SQLite has no column aliases here).
                update + f"FROM (SELECT column1 AS id, column2 AS n FROM (VALUES {values}) AS t) AS v WHERE {table}.id = v.id",
                [adapt(now - LAST_SEEN_STEP), adapt(now), *[value for group_id in ids for value in (group_id, per_group[group_id])]],
            )


def _notify_rule_assignments(created: list[NewDemand], changes: dict[int, list[RuleChange]], now: datetime) -> list[int]:
    """Notifications for what rules assigned (to a person, or to a team's active members)."""
    assigned = [(demand, change) for demand in created for change in changes.get(id(demand), ())
                if change.field in ("assignee", "team")]
    if not assigned:
        return []
    teams = Team.objects.in_bulk({int(change.new) for _, change in assigned if change.field == "team"})
    notifications = []
    for demand, change in assigned:
        text = f"Rule “{change.rule_name}” assigned demand #{demand.pk}: {demand.content[:120]}"
        if change.field == "assignee":
            notifications.append(Notification(user_id=int(change.new), demand_id=demand.pk, text=text, created_at=now))
        elif int(change.new) in teams:
            notifications.extend(
                Notification(user=member, demand_id=demand.pk, text=text, created_at=now)
                for member in teams[int(change.new)].members.filter(is_active=True)
                if member.pk != demand.assignee_id
            )
    return [n.pk for n in Notification.objects.bulk_create(notifications)]


def _key_text(key: bytes | None) -> str:
    if key is None:
        return ""
    # Keys are arbitrary bytes; a text column takes neither invalid UTF-8 nor (PostgreSQL) NUL,
    # and one such key must not fail the whole batch over and over.
    return bytes(key)[:1000].decode("utf-8", errors="replace").replace("\x00", "\ufffd")
