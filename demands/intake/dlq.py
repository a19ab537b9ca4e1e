"""The dead-letter queue as a work queue: read rejected messages, replay a (corrected) payload, discard.

A replay goes through Kafka like any other message — produced to the demand topic, keyed by
`source:id` — so the consumer decides again: valid → a demand; still invalid → a new rejected
message with the new reason, at the coordinates recorded on the one that was replayed. Every
action records who did it, when, and a note; a handled message leaves the open queue.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext

from .. import schema
from ..kafka import DeliveryFailed, deliver, demand_key
from ..models import Demand
from .models import RejectedMessage

__all__ = [
    "AlreadyHandled", "DeliveryFailed", "ReplayOutcome", "SourceChanged", "payload_pretty", "rejected_message_discard",
    "rejected_message_get", "rejected_message_page", "rejected_message_replay", "replay_outcome",
]

Status = RejectedMessage.Status
CLOCK_SKEW_MARGIN = timedelta(minutes=10)


class AlreadyHandled(Exception):
    """Someone else replayed or discarded this message first."""


class SourceChanged(Exception):
    """The corrected payload names another source than the message had, and the actor may not
    change it: a replay would pass for that source's own message (and claim one of its ids)."""


REPLAY_ANY_SOURCE = "demands.replay_any_source"


def _source(payload: bytes | str | None) -> str | None:
    try:
        data = json.loads(payload or b"")
    except (ValueError, RecursionError):
        return None
    source = data.get("source") if isinstance(data, dict) else None
    return source if isinstance(source, str) else None


# -- reads ----------------------------------------------------------------------------------------

def rejected_message_page(
    *, status: str = "", before: int | None = None, limit: int = 50
) -> tuple[list[RejectedMessage], int | None]:
    """Newest first, optionally one status; keyset pagination on (status, -id)."""
    queryset: QuerySet = RejectedMessage.objects.select_related("handled_by")
    if status:
        queryset = queryset.filter(status=status)
    if before is not None:
        queryset = queryset.filter(id__lt=before)
    items = list(queryset.defer("replay_payload").order_by("-id")[: limit + 1])
    has_more = len(items) > limit
    items = items[:limit]
    return items, (items[-1].pk if has_more else None)


def rejected_message_get(*, pk: int) -> RejectedMessage:
    return RejectedMessage.objects.select_related("handled_by").get(pk=pk)


def payload_pretty(text: str) -> tuple[str, bool]:
    """(text to show, is_json): JSON indented for reading and editing; anything else as it is."""
    try:
        pretty = json.dumps(json.loads(text), ensure_ascii=False, indent=2)
        pretty.encode("utf-8")  # a lone surrogate (legal as a JSON escape) cannot go on the page
        return pretty, True
    except (ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
        return text, False


@dataclass(slots=True)
class ReplayOutcome:
    """What became of a replay, once the consumer has read it."""

    demand: Demand | None = None  # stored (or already was: same source + id)
    rejected_again: RejectedMessage | None = None  # still invalid, with the new reason

    @property
    def pending(self) -> bool:
        return self.demand is None and self.rejected_again is None


def replay_outcome(*, rejected: RejectedMessage) -> ReplayOutcome | None:
    if rejected.status != Status.REPLAYED or rejected.replay_offset is None:
        return None
    # Stored after the replay, and not this row: a topic deleted and re-created starts its offsets
    # again, so an old row can sit at the same coordinates. The margin absorbs clock differences
    # between the web and consumer machines.
    again = (
        RejectedMessage.objects.filter(
            topic=rejected.replay_topic, partition=rejected.replay_partition, offset=rejected.replay_offset,
            received_at__gte=rejected.handled_at - CLOCK_SKEW_MARGIN,
        )
        .exclude(pk=rejected.pk)
        .first()
    )
    if again is not None:
        return ReplayOutcome(rejected_again=again)
    try:
        message = schema.parse_demand(rejected.replay_payload)
    except schema.InvalidMessage:
        return ReplayOutcome()  # the consumer will reject it; not read yet
    # Found by identity (an indexed lookup), not by Kafka position (not indexed on demands).
    demand = Demand.objects.filter(source=message.source, message_id=message.message_id).first()
    return ReplayOutcome(demand=demand)


# -- writes ---------------------------------------------------------------------------------------

def _replay_topic(rejected: RejectedMessage) -> str:
    # Back where it came from, if that is still a demand topic; otherwise the main one.
    return rejected.topic if rejected.topic in settings.KAFKA_TOPICS else settings.KAFKA_TOPICS[0]


def _replay_key(payload: bytes, rejected: RejectedMessage) -> bytes | None:
    """The same key rule as every producer (source:id); the original key when there is no identity."""
    try:
        key = demand_key(json.loads(payload))
    except (ValueError, RecursionError):
        key = None
    if key is None and rejected.key:
        key = rejected.key.encode()
    return key


def rejected_message_replay(*, rejected: RejectedMessage, actor, payload: str | None = None, note: str = "") -> RejectedMessage:
    """Produce `payload` (or the original bytes, unchanged, when None) to the demand topic.

    Waits for the broker's confirmation, then records the action and where the record went.
    The source stays the original's when that was readable, unless the actor has the permission
    "demands.replay_any_source" (superusers do): else SourceChanged, and nothing is produced.
    Raises AlreadyHandled if the message is not open, DeliveryFailed if Kafka did not confirm
    (then nothing is recorded and the message stays open). Two people replaying at the same
    moment can both produce; only the first is recorded, and the second copy is harmless
    (a demand is stored once per source and id).
    """
    if rejected.status != Status.OPEN:
        raise AlreadyHandled(f"rejected message #{rejected.pk} is already {rejected.get_status_display().lower()}")
    value = bytes(rejected.payload or b"") if payload is None else payload.encode("utf-8", errors="surrogatepass")
    if payload is not None:
        original, corrected = _source(bytes(rejected.payload or b"")), _source(value)
        if original is not None and corrected is not None and corrected != original and not actor.has_perm(REPLAY_ANY_SOURCE):
            raise SourceChanged(gettext(
                "The message came from source “%(original)s”; a replay may not change it to “%(corrected)s”."
            ) % {"original": original, "corrected": corrected})
    headers = [("replay.of", str(rejected.pk).encode()), ("replay.by", actor.get_username().encode())]
    started = timezone.now()  # before the consumer can possibly have read it
    [delivered] = deliver([(_replay_topic(rejected), _replay_key(value, rejected), value, headers)])
    fields = {
        "status": Status.REPLAYED,
        "handled_by": actor,
        "handled_at": started,
        "note": note,
        "replay_payload": value.decode("utf-8", errors="replace"),
        "replay_topic": delivered.topic,
        "replay_partition": delivered.partition,
        "replay_offset": delivered.offset,
    }
    if not RejectedMessage.objects.filter(pk=rejected.pk, status=Status.OPEN).update(**fields):
        raise AlreadyHandled(f"rejected message #{rejected.pk} was handled by someone else meanwhile")
    for name, field_value in fields.items():
        setattr(rejected, name, field_value)
    return rejected


def rejected_message_discard(*, rejected: RejectedMessage, actor, note: str = "") -> RejectedMessage:
    """Close the message without replaying it (spam, a test, fixed at the source…)."""
    fields = {"status": Status.DISCARDED, "handled_by": actor, "handled_at": timezone.now(), "note": note}
    if not RejectedMessage.objects.filter(pk=rejected.pk, status=Status.OPEN).update(**fields):
        raise AlreadyHandled(f"rejected message #{rejected.pk} is not open any more")
    for name, field_value in fields.items():
        setattr(rejected, name, field_value)
    return rejected
