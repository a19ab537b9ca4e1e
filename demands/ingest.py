"""Persist a batch of Kafka records idempotently: valid ones become demands, invalid ones are kept.

`persist_batch` is the one place records enter the database. It runs in one transaction, so a
batch is stored whole or not at all; the caller commits Kafka offsets only after it returned.
A redelivered record changes nothing: demands are unique on (source, message_id) and rejected
messages on (topic, partition, offset).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from . import schema
from .models import Demand, DemandEvent, DemandGroup, Notification, Priority, RejectedMessage, Team
from .rules import RuleBook, RuleChange, apply_rules, fingerprint


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
    notification_ids: list[int] = field(default_factory=list)  # rule assignments to notify live


_default_rulebook = RuleBook()


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


def persist_batch(records: list[IncomingMessage], *, rulebook: RuleBook | None = None) -> BatchResult:
    """Parse and store `records` in one transaction; return what was new and what was rejected.

    New demands go through the rules (priority, tags, category, assignment) and into their group
    before they are inserted, so each is written once; what rules changed becomes history.
    """
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
            rules = (rulebook or _default_rulebook).rules()
            changes = {id(demand): apply_rules(demand, rules) for demand in new} if rules else {}
            _assign_groups(new, now)
            result.created = Demand.objects.bulk_create(new)
            if any(changes.values()):
                result.notification_ids = _record_rule_changes(result.created, changes, now)
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


def _assign_groups(demands: list[Demand], now: datetime) -> None:
    """Put each demand in the group of its fingerprint, creating groups and bumping counts."""
    by_fingerprint: dict[str, list[Demand]] = defaultdict(list)
    for demand in demands:
        by_fingerprint[fingerprint(type=demand.type, source=demand.source, content=demand.content)].append(demand)
    groups = {group.fingerprint: group for group in DemandGroup.objects.filter(fingerprint__in=list(by_fingerprint))}
    missing = [
        DemandGroup(fingerprint=fp, type=members[0].type, source=members[0].source, title=members[0].content[:200],
                    count=0, first_seen=now, last_seen=now)
        for fp, members in by_fingerprint.items()
        if fp not in groups
    ]
    if missing:
        DemandGroup.objects.bulk_create(missing)  # a concurrent creator → IntegrityError → batch retried
        groups.update({group.fingerprint: group for group in DemandGroup.objects.filter(fingerprint__in=[g.fingerprint for g in missing])})
    by_increment: dict[int, list[int]] = defaultdict(list)
    for fp, members in by_fingerprint.items():
        for demand in members:
            demand.group_id = groups[fp].pk
        by_increment[len(members)].append(groups[fp].pk)
    for increment, group_ids in by_increment.items():  # usually one UPDATE: most groups grow by 1
        DemandGroup.objects.filter(pk__in=sorted(group_ids)).update(count=F("count") + increment, last_seen=now)


def _record_rule_changes(created: list[Demand], changes: dict[int, list[RuleChange]], now: datetime) -> list[int]:
    """History entries for what rules changed, and notifications for rule assignments."""
    users = get_user_model().objects.in_bulk(
        {int(c.new) for cs in changes.values() for c in cs if c.field == "assignee"}
        | {int(c.old) for cs in changes.values() for c in cs if c.field == "assignee" and c.old}
    )
    teams = Team.objects.in_bulk(
        {int(v) for cs in changes.values() for c in cs if c.field == "team" for v in (c.old, c.new) if v}
    )

    def shown(change: RuleChange, value: str) -> str:
        if change.field == "assignee" and value:
            user = users.get(int(value))
            return (user.get_full_name() or user.get_username()) if user else value
        if change.field == "team" and value:
            team = teams.get(int(value))
            return team.name if team else value
        return value

    kinds = {"priority": DemandEvent.Kind.PRIORITY, "tags": DemandEvent.Kind.TAGS, "category": DemandEvent.Kind.CATEGORY,
             "assignee": DemandEvent.Kind.ASSIGNMENT, "team": DemandEvent.Kind.TEAM}
    events, notifications = [], []
    for demand in created:
        for change in changes.get(id(demand), ()):
            events.append(DemandEvent(demand=demand, kind=kinds[change.field], rule_id=change.rule_id,
                                      old_value=shown(change, change.old)[:200], new_value=shown(change, change.new)[:200], created_at=now))
            text = f"Rule “{change.rule_name}” assigned demand #{demand.pk}: {demand.content[:120]}"
            if change.field == "assignee":
                notifications.append(Notification(user_id=int(change.new), demand=demand, text=text, created_at=now))
            elif change.field == "team" and int(change.new) in teams:
                notifications.extend(
                    Notification(user=member, demand=demand, text=text, created_at=now)
                    for member in teams[int(change.new)].members.filter(is_active=True)
                    if member.pk != demand.assignee_id
                )
    DemandEvent.objects.bulk_create(events)
    return [n.pk for n in Notification.objects.bulk_create(notifications)]


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
    # Keys are arbitrary bytes; a text column takes neither invalid UTF-8 nor (PostgreSQL) NUL,
    # and one such key must not fail the whole batch over and over.
    return bytes(key)[:1000].decode("utf-8", errors="replace").replace("\x00", "\ufffd")
