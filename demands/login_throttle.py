"""Login throttling: after LOGIN_THROTTLE_FAILURES failed sign-ins for one username from one client
address, that pair is refused for LOGIN_THROTTLE_WINDOW seconds, with a message that says so.

A counter in Django's cache (Redis when REDIS_URL is set, so every daphne process shares it) with a
fixed window from the first failure. Keyed by username *and* address: guessing one account's
password from one machine stops, while the real user elsewhere can still sign in (an account-wide
lock would let anyone lock staff out). django-axes does more (audit tables, lockout views, many
backends) at the cost of models, middleware and a backend; this is what the dashboard needs.
"""

from __future__ import annotations

import hashlib
import math
import time

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.cache import cache
from django.utils.translation import gettext_lazy as _, ngettext

_now = time.time  # replaced in tests to step past the window


def _key(username: str, address: str) -> str:
    digest = hashlib.sha256(f"{username.strip().casefold()}\x1f{address}".encode()).hexdigest()
    return f"login-failures:{digest}"


def client_address(request) -> str:
    # daphne --proxy-headers puts the proxy's X-Forwarded-For client into REMOTE_ADDR.
    return request.META.get("REMOTE_ADDR", "") if request is not None else ""


def seconds_blocked(username: str, address: str) -> int:
    """Seconds until this username may try again from this address; 0 when it may now."""
    entry = cache.get(_key(username, address))
    if not entry:
        return 0
    count, first = entry
    remaining = first + settings.LOGIN_THROTTLE_WINDOW - _now()
    if count < settings.LOGIN_THROTTLE_FAILURES or remaining <= 0:
        return 0
    return math.ceil(remaining)


def record_failure(username: str, address: str) -> None:
    key = _key(username, address)
    now = _now()
    count, first = cache.get(key) or (0, now)
    if now - first >= settings.LOGIN_THROTTLE_WINDOW:
        count, first = 0, now  # the window has passed: start counting again
    # Read-modify-write: two simultaneous failures may count once; the limit stays about right.
    cache.set(key, (count + 1, first), timeout=settings.LOGIN_THROTTLE_WINDOW)


def reset(username: str, address: str) -> None:
    cache.delete(_key(username, address))


class ThrottledLoginMixin:
    """For AuthenticationForm subclasses: refuse before checking the password while throttled."""

    throttle_message = _("Too many failed sign-in attempts for this account from your address. Try again in %(minutes)s.")

    def clean(self):
        username = self.data.get("username", "") or ""
        address = client_address(self.request)
        wait = seconds_blocked(username, address)
        if wait:
            minutes = math.ceil(wait / 60)
            raise forms.ValidationError(
                self.throttle_message,
                code="throttled",
                params={"minutes": ngettext("%(n)d minute", "%(n)d minutes", minutes) % {"n": minutes}},
            )
        try:
            cleaned = super().clean()
        except forms.ValidationError:
            record_failure(username, address)
            raise
        reset(username, address)
        return cleaned


class ThrottledAdminAuthenticationForm(ThrottledLoginMixin, AdminAuthenticationForm):
    """The admin's own login form, throttled like the dashboard's (one shared counter)."""
