"""Who gets which kind where: reads and writes for the settings page and the admin.

A user chooses, per kind, their e-mail and/or the channels of their own teams. Staff with the
"change notification channel" permission (or superusers) manage teams' channels and what each
channel is told. Channel URLs are checked for their scheme here; where they point is checked
when sending (the SSRF rules of alert webhooks, monitoring.webhooks).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Q
from django.utils.translation import gettext as _

from ..access import is_staff
from ..models import Notification, OutboundChannel, OutboundMessage, SavedView, Subscription, Team
from ..monitoring.webhooks import mask_url
from .ingest import WatchedViews

CHANNEL_PERMISSION = "demands.change_outboundchannel"
KINDS = Notification.Kind


class SubscriptionError(Exception):
    """Shown to the user as is."""


def can_manage_channels(user) -> bool:
    return is_staff(user) and (user.is_superuser or user.has_perm(CHANNEL_PERMISSION))


def my_channels(*, user):
    """Enabled channels of the user's teams: where their own subscriptions may go besides e-mail."""
    return OutboundChannel.objects.filter(enabled=True, team__members=user).select_related("team").distinct()


def user_routes(*, user) -> set[tuple[str, int | None]]:
    return set(Subscription.objects.filter(user=user, team__isnull=True).values_list("kind", "channel_id"))


@transaction.atomic
def user_routes_set(*, user, routes: set[tuple[str, int | None]]) -> None:
    """Replace the user's subscriptions with `routes` ({(kind, channel id or None = e-mail)})."""
    if not is_staff(user):
        raise PermissionDenied
    allowed = set(my_channels(user=user).values_list("pk", flat=True))
    routes = {(kind, channel) for kind, channel in routes if kind in KINDS.values and (channel is None or channel in allowed)}
    Subscription.objects.filter(user=user, team__isnull=True).delete()
    Subscription.objects.bulk_create([Subscription(user=user, kind=kind, channel_id=channel) for kind, channel in routes])


def saved_view_notify_set(*, user, view_ids: set[int]) -> None:
    """Which of the user's saved views tell them of new matching demands (checked at ingest)."""
    SavedView.objects.filter(user=user).update(notify=False)
    SavedView.objects.filter(user=user, pk__in=view_ids).update(notify=True)
    transaction.on_commit(WatchedViews.invalidate)  # update() sends no signal


def team_channels():
    return OutboundChannel.objects.select_related("team").order_by("team__name", "name")


def channel_kinds(*, channel: OutboundChannel) -> set[str]:
    return set(Subscription.objects.filter(team__isnull=False, channel=channel).values_list("kind", flat=True))


@transaction.atomic
def channel_kinds_set(*, actor, channel: OutboundChannel, kinds: set[str]) -> None:
    """What a team's channel is told: any member's notifications of these kinds."""
    if not can_manage_channels(actor):
        raise PermissionDenied
    Subscription.objects.filter(team__isnull=False, channel=channel).delete()
    if channel.team_id:
        Subscription.objects.bulk_create([Subscription(team_id=channel.team_id, channel=channel, kind=kind)
                                          for kind in kinds if kind in KINDS.values])


def channel_create(*, actor, name: str, kind: str, target: str, secret: str = "", team: Team | None = None,
                   language: str = "") -> OutboundChannel:
    if not can_manage_channels(actor):
        raise PermissionDenied
    name, target = (name or "").strip()[:100], (target or "").strip()
    if not name:
        raise SubscriptionError(_("Give the channel a name."))
    if kind not in OutboundChannel.Kind.values:
        raise SubscriptionError(_("Choose a platform."))
    if kind == OutboundChannel.Kind.EMAIL:
        if not target or any("@" not in address for address in target.split(",")):
            raise SubscriptionError(_("Enter e-mail addresses, separated by commas."))
    elif urlsplit(target).scheme not in {"http", "https"} or not urlsplit(target).hostname:
        raise SubscriptionError(_("Enter the robot's http(s) webhook URL."))
    return OutboundChannel.objects.create(name=name, kind=kind, target=target[:1000], secret=(secret or "").strip()[:200],
                                          team=team, language=language or "")


def mask_target(target: str, *, kind: str = "") -> str:
    """A target as anyone but a superuser sees it: robot URLs and their keys are credentials, so
    each query value and long path segment keeps two characters at each end
    (https://oapi.dingtalk.com/robot/send?access_token=ab…89); an address keeps its domain."""
    if not target:
        return ""
    if "://" not in target:
        return ", ".join(_mask_address(address.strip()) for address in target.split(","))
    try:
        parts = urlsplit(target)
    except ValueError:
        return "…"
    if not parts.hostname:
        return mask_url(target)
    path = "/".join(_short(segment) if len(segment) > 16 else segment for segment in parts.path.split("/"))
    query = "&".join(f"{key}={_short(value)}" for key, _sep, value in
                     (item.partition("=") for item in parts.query.split("&") if item))
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{path}" + (f"?{query}" if query else "")


def _short(value: str) -> str:
    return f"{value[:2]}…{value[-2:]}" if len(value) > 4 else "…"


def _mask_address(address: str) -> str:
    local, _at, domain = address.partition("@")
    return f"{local[:2]}…@{domain}" if domain else _short(address)


def delivery_log(*, user, limit: int = 200):
    """Recent outgoing notifications: all for channel managers, otherwise the user's own and their teams' channels'."""
    rows = OutboundMessage.objects.exclude(status=OutboundMessage.Status.DIGESTED).select_related("channel", "user")
    if not can_manage_channels(user):
        rows = rows.filter(Q(user=user) | Q(channel__team__members=user)).distinct()
    return rows.order_by("-id")[:limit]
