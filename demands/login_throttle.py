"""Login throttling: after LOGIN_THROTTLE_FAILURES failed sign-ins for one username from one client
address, that pair is refused for LOGIN_THROTTLE_WINDOW seconds, with a message that says so.

A counter in Django's cache (Redis when REDIS_URL is set, so every daphne process shares it) with a
fixed window from the first failure, counted with cache.add + cache.incr (atomic in Redis and in
the local-memory cache, so parallel guesses each count). The username is keyed as sign-in reads
it (NFKC, case-folded), so look-alike spellings of one account share its allowance. Keyed by username *and* address: guessing one account's
password from one machine stops, while the real user elsewhere can still sign in (an account-wide
lock would let anyone lock staff out). django-axes does more (audit tables, lockout views, many
backends) at the cost of models, middleware and a backend; this is what the dashboard needs.
"""

from __future__ import annotations

import hashlib
import math
import time
import unicodedata

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.cache import cache
from django.utils.translation import gettext_lazy as _, ngettext

_now = time.time  # replaced in tests to step past the window


def _key(username: str, address: str) -> str:
    # The same normalisation as AuthenticationForm's UsernameField (NFKC), then case-folded.
    name = unicodedata.normalize("NFKC", username).strip().casefold()
    digest = hashlib.sha256(f"{name}\x1f{address}".encode()).hexdigest()
    return f"login-failures:{digest}"


def client_address(request) -> str:
    # daphne --proxy-headers puts the *left-most* X-Forwarded-For entry into REMOTE_ADDR, so the
    # proxy must overwrite that header with the peer address (README, "Security notes").
    return request.META.get("REMOTE_ADDR", "") if request is not None else ""


def _window(key: str) -> tuple[int, float | None]:
    """(failures, time of the first) in the current window."""
    first = cache.get(f"{key}:first")
    if first is None or _now() - first >= settings.LOGIN_THROTTLE_WINDOW:
        return 0, None
    return cache.get(f"{key}:count") or 0, first


def seconds_blocked(username: str, address: str) -> int:
    """Seconds until this username may try again from this address; 0 when it may now."""
    count, first = _window(_key(username, address))
    if first is None or count < settings.LOGIN_THROTTLE_FAILURES:
        return 0
    return math.ceil(first + settings.LOGIN_THROTTLE_WINDOW - _now())


def record_failure(username: str, address: str) -> None:
    key = _key(username, address)
    window = settings.LOGIN_THROTTLE_WINDOW
    now = _now()
    first = cache.get(f"{key}:first")
    if first is not None and now - first >= window:
        reset(username, address)  # the window has passed (the cache has not expired it yet)
    # add() only creates, incr() adds in one step: no read-then-write to lose a parallel failure.
    cache.add(f"{key}:first", now, timeout=window)
    cache.add(f"{key}:count", 0, timeout=window)
    try:
        cache.incr(f"{key}:count")
    except ValueError:  # expired between add and incr: this failure starts a new window
        cache.set(f"{key}:count", 1, timeout=window)


def reset(username: str, address: str) -> None:
    key = _key(username, address)
    cache.delete_many([f"{key}:first", f"{key}:count"])


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
