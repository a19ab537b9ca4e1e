"""Persist a batch of Kafka records idempotently: valid ones become demands, invalid ones are kept.

`persist_batch` is the one place records enter the database. It runs in one transaction, so a
batch is stored whole or not at all; the caller commits Kafka offsets only after it returned.
A redelivered record changes nothing: demands are unique on (source, message_id) and rejected
messages on (topic, partition, offset).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from . import schema
from .models import Demand, Priority, RejectedMessage
from .monitoring.flow import record_batch_flow


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
class BatchResult:
    created: list[Demand] = field(default_factory=list)
    rejected: list[tuple[IncomingMessage, str]] = field(default_factory=list)
    duplicates: int = 0


def build_demand(message: schema.DemandMessage, record: IncomingMessage, now: datetime) -> Demand:
    return Demand(
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


def persist_batch(records: list[IncomingMessage]) -> BatchResult:
    """Parse and store `records` in one transaction; return what was new and what was rejected."""
    result = BatchResult()
    now = timezone.now()
    candidates: dict[tuple[str, str], Demand] = {}
    for record in records:
        try:
            message = schema.parse_demand(record.value)
        except schema.InvalidMessage as exc:
            result.rejected.append((record, exc.reason))
            continue
        identity = (message.source, message.message_id)
        if identity in candidates:
            result.duplicates += 1  # the same demand twice in one batch: the first one wins
            continue
        candidates[identity] = build_demand(message, record, now)

    with transaction.atomic():
        if candidates:
            existing = _existing_identities(candidates.keys())
            new = [demand for identity, demand in candidates.items() if identity not in existing]
            result.duplicates += len(candidates) - len(new)
            # A concurrent consumer inserting the same identity between the check and the insert
            # raises IntegrityError: the whole batch rolls back and the caller retries it, and the
            # retry sees the other row. Records keyed by source:id never race (same partition).
            result.created = Demand.objects.bulk_create(new)
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


def _existing_identities(identities) -> set[tuple[str, str]]:
    by_source: dict[str, list[str]] = {}
    for source, message_id in identities:
        by_source.setdefault(source, []).append(message_id)
    found: set[tuple[str, str]] = set()
    for source, message_ids in by_source.items():
        found.update(
            Demand.objects.filter(source=source, message_id__in=message_ids).values_list("source", "message_id")
        )
    return found


def _key_text(key: bytes | None) -> str:
    if key is None:
        return ""
    return bytes(key)[:1000].decode("utf-8", errors="replace")
