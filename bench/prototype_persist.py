"""Prototype of the fast persist path, for the lead to port into `demands.ingest`: same input as
`persist_batch` (a list of IncomingMessage), same validation, same idempotence, ~3× less time.

What it changes, and why (figures in bench/README.md):
- No Model instances on the hot path: rows are tuples built straight from the validated message.
  `Demand(...)` + `bulk_create` spend most of their time in `Model.__init__`, field
  `get_db_prep_save` and SQL compilation, once per row.
- PostgreSQL: COPY the batch into a per-connection temporary staging table, then one
  `INSERT … SELECT … ON CONFLICT (source, message_id) DO NOTHING RETURNING id`. The conflict
  clause replaces the "which identities exist already" SELECT, and COPY replaces a 17×500-parameter
  INSERT that the driver must adapt value by value.
- SQLite: one multi-row `INSERT … ON CONFLICT DO NOTHING RETURNING id` per chunk.
- JSON: orjson when installed (falls back to the stdlib parser — and to `schema.parse_demand` for
  anything orjson refuses, so every rejection reason is the same as today's).

orjson reads integers beyond 64 bits as floats where the stdlib keeps exact ints; a message whose
extra fields hold any float is therefore re-read by the stdlib (rare, and exact).
"""

from __future__ import annotations

import json
import weakref
from dataclasses import dataclass, field

from django.db import connection, transaction
from django.utils import timezone

from demands import schema
from demands.pipeline.parse import IncomingMessage
from demands.pipeline.persist import _key_text
from demands.models import Demand, Priority, RejectedMessage

try:
    import orjson

    _loads = orjson.loads

    def _dumps(value) -> str:
        try:
            return orjson.dumps(value).decode()
        except TypeError:  # integers beyond 64 bits
            return json.dumps(value, ensure_ascii=False)
except ImportError:  # pragma: no cover - the stdlib is the fallback, not the plan
    orjson = None
    _loads = json.loads

    def _dumps(value) -> str:
        return json.dumps(value, ensure_ascii=False)


# Columns filled from the message; every other concrete column gets its model default once per batch.
MESSAGE_COLUMNS = ("source", "message_id", "type", "content", "occurred_at", "priority", "tags", "extra",
                   "kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp", "received_at")
STAGING_TABLE = "demand_ingest_staging"
_staging_ready = weakref.WeakSet()  # raw connections that already have the temp table


@dataclass(slots=True)
class FastBatchResult:
    created_ids: list[int] = field(default_factory=list)
    rejected: list[tuple[IncomingMessage, str]] = field(default_factory=list)
    duplicates: int = 0


def parse_fast(raw: bytes | None) -> schema.DemandMessage:
    """`schema.parse_demand` with orjson in front; anything orjson refuses takes the stdlib path."""
    if raw is not None and len(raw) <= schema.MAX_MESSAGE_BYTES:
        try:
            data = _loads(raw)
        except ValueError:
            pass  # not JSON, bad UTF-8, NaN, empty…: let the reference parser say exactly why
        else:
            if not (isinstance(data, dict) and len(data) > 5 and _has_float(data)):
                return schema.demand_from_dict(data)
    return schema.parse_demand(raw)


def _has_float(value) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_has_float(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_float(item) for item in value)
    return False


def _default_columns() -> list[tuple[str, object]]:
    """(column, value) for concrete columns the message does not set: status, category, version…"""
    out = []
    for f in Demand._meta.concrete_fields:
        if f.primary_key or f.attname in MESSAGE_COLUMNS:
            continue
        out.append((f.column, f.get_db_prep_save(f.get_default(), connection)))
    return out


def persist_batch_fast(records: list[IncomingMessage]) -> FastBatchResult:
    """Parse and store `records` in one transaction; return the new demands' ids and the rejects."""
    result = FastBatchResult()
    now = timezone.now()
    defaults = _default_columns()
    default_values = tuple(value for _column, value in defaults)
    columns = MESSAGE_COLUMNS + tuple(column for column, _value in defaults)
    rows: dict[tuple[str, str], tuple] = {}
    for record in records:
        try:
            message = parse_fast(record.value)
        except schema.InvalidMessage as exc:
            result.rejected.append((record, exc.reason))
            continue
        identity = (message.source, message.message_id)
        if identity in rows:
            result.duplicates += 1  # the same demand twice in one batch: the first one wins
            continue
        rows[identity] = (
            message.source, message.message_id, message.type, message.content, message.occurred_at,
            message.priority or Priority.NORMAL,
            _dumps(message.tags) if message.tags else "[]",
            _dumps(message.extra) if message.extra else "{}",
            record.topic, record.partition, record.offset, record.timestamp, now,
        ) + default_values

    with transaction.atomic():
        if rows:
            if connection.vendor == "postgresql":
                result.created_ids = _insert_postgresql(columns, list(rows.values()))
            else:
                result.created_ids = _insert_multirow(columns, list(rows.values()))
            result.duplicates += len(rows) - len(result.created_ids)
        if result.rejected:
            RejectedMessage.objects.bulk_create(
                [
                    RejectedMessage(
                        topic=record.topic, partition=record.partition, offset=record.offset,
                        kafka_timestamp=record.timestamp, key=_key_text(record.key), payload=record.value or b"",
                        reason=reason, received_at=now,
                    )
                    for record, reason in result.rejected
                ],
                ignore_conflicts=True,
            )
    return result


def _insert_postgresql(columns: tuple[str, ...], rows: list[tuple]) -> list[int]:
    table = Demand._meta.db_table
    cols = ", ".join(columns)
    with connection.cursor() as cursor:
        raw = cursor.cursor  # the psycopg cursor under Django's wrapper: same connection, same transaction
        if connection.connection not in _staging_ready:
            # Per session; emptied at every commit; invisible to other connections.
            raw.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {STAGING_TABLE} ON COMMIT DELETE ROWS AS "
                f"SELECT {cols} FROM {table} WITH NO DATA"
            )
            _staging_ready.add(connection.connection)
        with raw.copy(f"COPY {STAGING_TABLE} ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        raw.execute(
            f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {STAGING_TABLE} "
            "ON CONFLICT (source, message_id) DO NOTHING RETURNING id"
        )
        return [row[0] for row in raw.fetchall()]


def _insert_multirow(columns: tuple[str, ...], rows: list[tuple], chunk: int = 1000) -> list[int]:
    """SQLite (≥ 3.35 for RETURNING): one INSERT with many VALUES tuples per chunk."""
    table = Demand._meta.db_table
    adapt = connection.ops.adapt_datetimefield_value
    placeholder = "(" + ", ".join(["%s"] * len(columns)) + ")"
    ids: list[int] = []
    with connection.cursor() as cursor:
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            params = []
            for row in part:
                params.extend(adapt(v) if hasattr(v, "tzinfo") else v for v in row)
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([placeholder] * len(part))} "
                "ON CONFLICT (source, message_id) DO NOTHING RETURNING id",
                params,
            )
            ids.extend(row[0] for row in cursor.fetchall())
    return ids
