"""One-click actions in e-mail and chat: signed, expiring links that act as their recipient.

A link carries {user id, demand id, action, expiry} signed with the secret key and a salt of its
own (django.core.signing), so it cannot be altered or reused for another demand, action or person.
Opening it (GET) only shows a confirmation page — mail scanners prefetch links — and the POST
from that page acts, as the logged-in user, who must be the link's user (a team channel's links
name no user: any triager who signs in acts as themselves).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.conf import settings
from django.core import signing
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

SALT = "demands.outbound.action"
ACTIONS = {"claim": _("认领 Claim"), "acknowledge": _("Acknowledge"), "resolve": _("Resolve")}


class LinkError(Exception):
    """The link cannot be used; the message is shown as is."""


class LinkExpired(LinkError):
    pass


@dataclass(frozen=True, slots=True)
class ActionLink:
    user_id: int | None
    demand_id: int
    action: str
    expires_at: datetime


def max_age() -> timedelta:
    return timedelta(hours=getattr(settings, "OUTBOUND_LINK_MAX_AGE_HOURS", 72))


def base_url() -> str:
    return (getattr(settings, "PUBLIC_BASE_URL", "") or "").rstrip("/")


def absolute(path: str) -> str:
    return base_url() + path


def token(*, user_id: int | None, demand_id: int, action: str, now: datetime | None = None) -> str:
    expires = int(((now or timezone.now()) + max_age()).timestamp())
    return signing.dumps({"u": user_id, "d": demand_id, "a": action, "e": expires}, salt=SALT, compress=True)


def action_url(*, user_id: int | None, demand_id: int, action: str, now: datetime | None = None) -> str:
    return absolute(reverse("demands:outbound-action", args=[token(user_id=user_id, demand_id=demand_id, action=action, now=now)]))


def read(value: str, *, now: datetime | None = None) -> ActionLink:
    try:
        data = signing.loads(value, salt=SALT)
        link = ActionLink(user_id=data["u"], demand_id=int(data["d"]), action=data["a"],
                          expires_at=datetime.fromtimestamp(int(data["e"]), tz=dt_timezone.utc))
    except (signing.BadSignature, KeyError, TypeError, ValueError) as exc:
        raise LinkError(_("This link is not valid (it was changed or cut short).")) from exc
    if link.action not in ACTIONS:
        raise LinkError(_("This link is not valid (it was changed or cut short)."))
    if link.expires_at <= (now or timezone.now()):
        raise LinkExpired(_("This link has expired. Open the demand to act on it."))
    return link
