"""Records → a ParsedBatch: the part of a batch that needs no database.

Parse and validate each record (`schema`, with orjson in front for the common case), drop
identities repeated within the batch, fingerprint each demand for its group and — given the rules
— build the demand with the rules applied and its database row ready (`NewDemand.row`). The consume
loop runs this in its read-ahead worker while the database stores the previous batch; `persist`
only adds what storing sets (received_at, group, pk). A ParsedBatch is what every later stage takes:
there is no "maybe parsed" batch.
"""

from __future__ import annotations

import json
import operator
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone as dt_timezone

from .. import history, schema
from ..models import Demand, Priority, Status
from .grouping import fingerprint
from .rules import RuleBook, RuleChange, apply_rules

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
    headers: tuple | None = None  # Kafka headers ((name, bytes | None), ...); None when there are none


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
    origin: dict | None = None  # a DLQ replay's trace (see Demand.origin)
    archived_at: datetime | None = None  # set by a rule that archives on arrival (known noise)
    # Its SLA (demands.sla.timers.stamp), set when the batch is stored: the clock starts then.
    sla_policy_id: int | None = None
    sla_state: str = ""
    respond_by: datetime | None = None
    resolve_by: datetime | None = None
    sla_due_at: datetime | None = None
    sla_check_at: datetime | None = None
    pk: int | None = None
    row: tuple | None = None  # database values of STATIC_COLUMNS, built once (in the parser thread)

    def to_model(self) -> Demand:
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("pk", "row")}
        return Demand(pk=self.pk, status=Status.NEW, updated_at=self.received_at, **values)


# NewDemand's columns in insert order; the other columns take their model default. Those set when
# the batch is stored come last; the rest (STATIC_COLUMNS) are ready before, in `NewDemand.row`.
STORE_COLUMNS = ("received_at", "group_id", "sla_policy_id", "sla_state", "respond_by", "resolve_by", "sla_due_at", "sla_check_at")
store_values = operator.attrgetter(*STORE_COLUMNS)
STATIC_COLUMNS = tuple(f.name for f in fields(NewDemand) if f.name not in ("pk", "row", *STORE_COLUMNS))
ROW_COLUMNS = STATIC_COLUMNS + STORE_COLUMNS
JSON_COLUMNS = {"tags", "extra", "rule_changes", "origin"}


_default_rulebook = RuleBook()


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
        origin=replay_origin(record.headers) if record.headers else None,
    )


def replay_origin(headers: tuple) -> dict | None:
    """Where a record came from before Kafka, from its headers: a DLQ replay (`replay.of` /
    `replay.by`) or the AMQP bridge (`amqp.queue`, `amqp.message_id`); None for a direct producer."""
    values = dict(headers)
    if "amqp.queue" in values:
        return {"via": "amqp", "queue": (values["amqp.queue"] or b"").decode("utf-8", "replace")[:255],
                "message_id": (values.get("amqp.message_id") or b"").decode("utf-8", "replace")[:255]}
    try:
        rejected = int(values.get("replay.of") or b"")
    except ValueError:
        return None
    return {"via": "dlq-replay", "rejected_message": rejected, "by": (values.get("replay.by") or b"").decode("utf-8", "replace")}


_static_values = operator.attrgetter(*STATIC_COLUMNS)  # one C call for the row's values
_JSON_INDEXES = [index for index, name in enumerate(STATIC_COLUMNS) if name in JSON_COLUMNS]


def _static_row(demand: NewDemand) -> tuple:
    row = list(_static_values(demand))
    for index in _JSON_INDEXES:
        if row[index] is not None:  # a null origin is SQL NULL, not JSON null
            row[index] = _dumps(row[index])
    return tuple(row)


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
        prepare_demands(parsed, rules)
    return parsed


def prepare_demands(parsed: ParsedBatch, rules: list) -> None:
    """The batch's demands, with the rules applied and their rows built (received_at and the
    group are set when it is stored)."""
    parsed.demands = [new_demand(message, record, None) for record, message, _ in parsed.valid]
    parsed.changes = {id(demand): _apply_rules(demand, rules) for demand in parsed.demands} if rules else {}
    for demand in parsed.demands:
        demand.row = _static_row(demand)


def _apply_rules(demand: NewDemand, rules: list) -> list[RuleChange]:
    changes = apply_rules(demand, rules)
    demand.rule_changes = [history.rule_change(change) for change in changes]
    return changes


def current_rules(rulebook: RuleBook | None = None) -> list:
    """The rules ingest applies now (reloaded when they change; see RuleBook)."""
    return (rulebook or _default_rulebook).rules()


_MAX_TIMESTAMP_MS = int(datetime(9999, 12, 30, tzinfo=dt_timezone.utc).timestamp() * 1000)


def record_from(message) -> IncomingMessage:
    kind, millis = message.timestamp()
    headers = message.headers()  # None without headers: nothing is built on the common path
    timestamp = None
    if kind != 0 and millis is not None and 0 <= millis <= _MAX_TIMESTAMP_MS:  # 0 = TIMESTAMP_NOT_AVAILABLE
        # Producers set CreateTime; brokers before Kafka 3.6 accept any value by default, and
        # one past year 9999 would otherwise crash the loop on every restart.
        timestamp = datetime.fromtimestamp(millis / 1000, tz=dt_timezone.utc)
    return IncomingMessage(
        topic=message.topic(),
        partition=message.partition(),
        offset=message.offset(),
        value=message.value(),
        key=message.key(),
        timestamp=timestamp,
        headers=tuple(headers) if headers else None,
    )
