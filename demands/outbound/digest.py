"""Flood control: per route (one recipient's e-mail, or one channel) at most OUTBOUND_FLOOD_LIMIT
messages leave in any OUTBOUND_FLOOD_WINDOW_SECONDS; when more are waiting than fit, the last
free slot carries one digest of all the rest ("1,240 notifications arrived while the consumer was
catching up; 37 urgent"). With no free slot, queued rows wait for the window to move on.

This holds however the rows arrived — a backlog drained after an outage queues thousands in one
batch, and they leave as a few messages and a digest, not thousands of posts. Two workers never
release one route at once (a transaction-level advisory lock per route on PostgreSQL; SQLite
serialises writers anyway).
"""

from __future__ import annotations

import zlib
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection

from ..models import OutboundMessage, Priority

QUEUED = OutboundMessage.Status.QUEUED
SAMPLE = 10


def flood_limit() -> int:
    return max(1, int(getattr(settings, "OUTBOUND_FLOOD_LIMIT", 3)))


def flood_window() -> timedelta:
    return timedelta(seconds=float(getattr(settings, "OUTBOUND_FLOOD_WINDOW_SECONDS", 300)))


def release(*, now: datetime) -> int:
    """Release what each route may send now (inside the caller's transaction); return the rows released."""
    released = 0
    for route in OutboundMessage.objects.filter(status=QUEUED).values_list("route", flat=True).distinct().order_by():
        if _route_lock(route):
            released += _release_route(route, now)
    return released


def _route_lock(route: str) -> bool:
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", [0x756D7367, zlib.crc32(route.encode()) - 2**31])
        return bool(cursor.fetchone()[0])


def _release_route(route: str, now: datetime) -> int:
    used = OutboundMessage.objects.filter(route=route, released_at__gt=now - flood_window()).count()
    free = flood_limit() - used
    if free <= 0:
        return 0
    queued = OutboundMessage.objects.filter(route=route, status=QUEUED)
    head = list(queued.order_by("id").values_list("id", flat=True)[: free + 1])
    if not head:
        return 0
    if len(head) <= free:
        return _release(head, now)
    single, last_id = head[: free - 1], queued.order_by("-id").values_list("id", flat=True).first()
    rest = queued.filter(id__lte=last_id).exclude(id__in=single)
    count = rest.count()
    urgent_ids = list(rest.filter(demand__priority=Priority.URGENT).order_by("-id").values_list("demand_id", flat=True)[:SAMPLE])
    urgent = rest.filter(demand__priority=Priority.URGENT).count() if len(urgent_ids) == SAMPLE else len(urgent_ids)
    sample = urgent_ids + list(rest.exclude(demand_id__in=urgent_ids).order_by("-id")
                               .values_list("demand_id", flat=True)[: SAMPLE - len(urgent_ids)])
    first = rest.order_by("id").first()
    summary_row = OutboundMessage.objects.create(
        route=route, kind="digest", user_id=first.user_id, channel_id=first.channel_id, target=first.target,
        language=first.language, status=OutboundMessage.Status.PENDING, created_at=now, released_at=now,
        next_attempt_at=now, summary={"count": count, "urgent": urgent, "sample": [pk for pk in sample if pk]},
    )
    rest.update(status=OutboundMessage.Status.DIGESTED, digest=summary_row)
    return _release(single, now) + 1


def _release(ids: list[int], now: datetime) -> int:
    return OutboundMessage.objects.filter(id__in=ids, status=QUEUED).update(
        status=OutboundMessage.Status.PENDING, released_at=now, next_attempt_at=now
    )
