"""Every saved notification → the outbox rows of its recipient's subscribed routes, and the worker
step that sends them.

`enqueue` runs inside `notifications.save`, in the caller's transaction (a person's change, a
batch at ingest, an SLA timer): the outbox rows commit with the notifications or not at all, so a
crash loses nothing and sends nothing twice. It costs a fixed number of queries per call,
whatever the number of rows (subscriptions, team members, languages, addresses, demands).

`deliver_due` is the worker step (each monitor tick, on the monitor's delivery thread, or
`send_notifications`): flood control first (outbound.digest releases or folds queued rows), then
the shared outbox drain (demands.outbox: claimed, retried with back-off, given up), through the
same SSRF-checked POST as alert webhooks.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q

from .. import outbox
from ..models import Demand, Follow, Notification, OutboundChannel, OutboundMessage, Subscription, Team, UserPreference
from ..monitoring import conf as monitoring_conf
from ..monitoring.notify import retry_delay
from ..monitoring.webhooks import WebhookError, post
from . import digest
from .channels import HTTP_CHANNELS, email
from .render import message_for

logger = logging.getLogger(__name__)
QUEUED = OutboundMessage.Status.QUEUED


def email_route(user_id: int) -> str:
    return f"email:{user_id}"


def channel_route(channel_id: int) -> str:
    return f"channel:{channel_id}"


def enqueue(notifications: list[Notification], *, now: datetime | None = None) -> list[OutboundMessage]:
    """Outbox rows for saved `notifications`; assignees follow what they were assigned."""
    if not notifications:
        return []
    _follow_assigned(notifications)
    user_ids = {n.user_id for n in notifications}
    kinds = {n.kind for n in notifications}
    personal = defaultdict(list)  # (user id, kind) → [channel id, or None for their e-mail]
    for user_id, kind, channel_id in Subscription.objects.filter(user_id__in=user_ids, kind__in=kinds).filter(
        Q(channel__isnull=True) | Q(channel__enabled=True)
    ).values_list("user_id", "kind", "channel_id"):
        personal[(user_id, kind)].append(channel_id)
    team_subscriptions = list(
        Subscription.objects.filter(team__isnull=False, user__isnull=True, kind__in=kinds, channel__enabled=True,
                                    team__members__in=user_ids).values_list("team_id", "kind", "channel_id").distinct()
    )
    teams_of = defaultdict(set)
    if team_subscriptions:
        through = Team.members.through
        for team_id, user_id in through.objects.filter(
            team_id__in={t for t, _, _ in team_subscriptions}, user_id__in=user_ids
        ).values_list("team_id", "user_id"):
            teams_of[user_id].add(team_id)
    if not personal and not team_subscriptions:
        return []
    demand_team = dict(Demand.objects.filter(pk__in={n.demand_id for n in notifications}).values_list("pk", "team_id"))
    channels = OutboundChannel.objects.in_bulk({c for cs in personal.values() for c in cs if c}
                                               | {c for _, _, c in team_subscriptions})
    languages = dict(UserPreference.objects.filter(user_id__in=user_ids).values_list("user_id", "language"))
    addresses = dict(get_user_model().objects.filter(pk__in=user_ids, is_active=True)
                     .exclude(email="").values_list("pk", "email"))
    rows, seen = [], set()

    def add(notification: Notification, channel_id: int | None, user_id: int | None):
        route = channel_route(channel_id) if channel_id else email_route(notification.user_id)
        key = (route, notification.demand_id, notification.kind)
        if key in seen:  # a team channel hears of a demand once, not once per member
            return
        if channel_id:
            channel = channels.get(channel_id)
            if channel is None:
                return
            target, language = channel.target, channel.language
        elif notification.user_id in addresses:
            target, language = addresses[notification.user_id], languages.get(notification.user_id, "")
        else:
            return  # no address: the in-page notification is all they get
        seen.add(key)
        rows.append(OutboundMessage(
            route=route, kind=notification.kind, user_id=user_id, channel_id=channel_id, target=target,
            language=language or settings.LANGUAGE_CODE, demand_id=notification.demand_id, notification_id=notification.pk,
            summary={**({"text": notification.text} if notification.kind in ("sla", "escalation", "saved_view") else {}),
                     **getattr(notification, "outbound_summary", {})},  # a group's assignment: {"group", "count"}
            created_at=now or notification.created_at,
        ))

    for notification in notifications:
        for channel_id in personal.get((notification.user_id, notification.kind), ()):
            add(notification, channel_id, notification.user_id)
        for team_id, kind, channel_id in team_subscriptions:
            if kind != notification.kind or team_id not in teams_of.get(notification.user_id, ()):
                continue
            if kind == Notification.Kind.TEAM and demand_team.get(notification.demand_id) != team_id:
                continue  # "assigned to my team" on a team's channel: that team's demands only
            add(notification, channel_id, None)
    return OutboundMessage.objects.bulk_create(rows)


def enqueue_rule_posts(posts: list[tuple[int, int, str]], *, now: datetime) -> list[OutboundMessage]:
    """Rules that notify a channel directly: [(demand id, channel id, rule name)]."""
    channels = OutboundChannel.objects.filter(enabled=True).in_bulk({channel_id for _, channel_id, _ in posts})
    return OutboundMessage.objects.bulk_create([
        OutboundMessage(route=channel_route(channel_id), kind="rule", channel_id=channel_id, target=channels[channel_id].target,
                        language=channels[channel_id].language or settings.LANGUAGE_CODE, demand_id=demand_id,
                        summary={"rule": rule_name}, created_at=now)
        for demand_id, channel_id, rule_name in posts if channel_id in channels
    ])


def _follow_assigned(notifications: list[Notification]) -> None:
    pairs = {(n.user_id, n.demand_id) for n in notifications if n.kind == Notification.Kind.ASSIGNED}
    if pairs:
        Follow.objects.bulk_create([Follow(user_id=u, demand_id=d) for u, d in pairs], ignore_conflicts=True)


# -- the worker step -----------------------------------------------------------------------------

def deliver_due(*, now: datetime, limit: int = 50) -> outbox.DeliveryRun:
    """Flood control, then send up to `limit` due messages. Safe to run in several processes."""
    with transaction.atomic():
        digest.release(now=now)
    return outbox.drain(
        model=OutboundMessage, now=now, send=send, limit=limit, select_related=("channel",),
        max_attempts=getattr(settings, "OUTBOUND_MAX_ATTEMPTS", monitoring_conf.get("MONITORING_DELIVERY_MAX_ATTEMPTS")),
        retry_delay=retry_delay,
    )


def send(row: OutboundMessage, now: datetime) -> int | None:
    message = message_for(row, now=now)
    row.summary = {**row.summary, "title": message.title[:200]}
    OutboundMessage.objects.filter(pk=row.pk).update(summary=row.summary)
    if row.channel_id is None or row.channel.kind == OutboundChannel.Kind.EMAIL:
        email.send([address.strip() for address in row.target.split(",") if address.strip()], message)
        return None
    channel = row.channel
    module = HTTP_CHANNELS.get(channel.kind)
    if module is None:
        raise WebhookError(f"channel kind {channel.kind} cannot be sent")
    url, body, headers = module.request(channel.target, channel.secret, message, now=now.timestamp())
    if channel.kind == OutboundChannel.Kind.WEBHOOK:
        headers["X-Umsg-Delivery"] = str(row.pk)
    return post(url, body, headers, timeout=monitoring_conf.get("MONITORING_WEBHOOK_TIMEOUT"),
                label=f"notification {row.pk}", check=module.check)
