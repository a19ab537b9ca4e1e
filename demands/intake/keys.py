"""Per-source API keys for HTTP ingest: created and shown once, stored hashed, checked per
request, with a token-bucket rate limit per key, the web origins each key allows, and — for keys
used from web pages, which are public — a limit per client address.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from django.conf import settings
from django.core.cache import cache
from django.db.models import F, FloatField, Value
from django.db.models.functions import Cast, Greatest, Least
from django.db.models.lookups import GreaterThanOrEqual
from django.utils import timezone

from .models import SourceApiKey

KEY_SCHEME = "umk_"  # easy to spot in a leaked log or a secret scanner's rules
PREFIX_CHARS = 8  # hex, so the key splits unambiguously: umk_<8 hex>_<secret>


# -- API keys -------------------------------------------------------------------------------------

def _hash_key(plain: str) -> str:
    return hashlib.sha256(plain.encode()).hexdigest()


def api_key_set_secret(*, api_key: SourceApiKey) -> str:
    """Give an unsaved key a new secret; return the plain key, which is never stored."""
    prefix = secrets.token_hex(PREFIX_CHARS // 2)
    plain = f"{KEY_SCHEME}{prefix}_{secrets.token_urlsafe(32)}"
    api_key.prefix = prefix
    api_key.key_hash = _hash_key(plain)
    return plain


def api_key_create(
    *, name: str, source: str, created_by=None, allowed_origins: str = "", rate_per_minute: int | None = None,
    burst: int | None = None,
) -> tuple[SourceApiKey, str]:
    """Make a key bound to `source`; returns it with the plain key (show it once, then forget it)."""
    api_key = SourceApiKey(name=name, source=source, created_by=created_by, allowed_origins=allowed_origins)
    if rate_per_minute is not None:
        api_key.rate_per_minute = rate_per_minute
    if burst is not None:
        api_key.burst = burst
    plain = api_key_set_secret(api_key=api_key)
    api_key.full_clean()
    api_key.save()
    return api_key, plain


def api_key_revoke(*, api_key: SourceApiKey, actor=None) -> SourceApiKey:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.revoked_by = actor
        api_key.save(update_fields=["revoked_at", "revoked_by"])
    return api_key


class IngestRefused(Exception):
    """The request as a whole is refused: `status` and `reason` go to the client as they are."""

    def __init__(self, status: int, reason: str, **details):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.details = details


def presented_key(headers) -> str | None:
    """The key from `Authorization: Bearer <key>` or `X-Api-Key: <key>`."""
    authorization = headers.get("Authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return headers.get("X-Api-Key", "").strip() or None


def api_key_authenticate(*, presented: str | None) -> SourceApiKey:
    if not presented:
        raise IngestRefused(401, "missing API key: send 'Authorization: Bearer <key>' or 'X-Api-Key: <key>'")
    prefix = presented[len(KEY_SCHEME) : len(KEY_SCHEME) + PREFIX_CHARS] if presented.startswith(KEY_SCHEME) else ""
    api_key = SourceApiKey.objects.filter(prefix=prefix).first() if prefix else None
    # One answer for "no such prefix" and "wrong secret", and a constant-time comparison.
    if api_key is None or not hmac.compare_digest(api_key.key_hash, _hash_key(presented)):
        raise IngestRefused(401, "unknown API key")
    if not api_key.is_active:
        raise IngestRefused(401, "this API key was revoked; ask an administrator for a new one")
    return api_key


# -- CORS -----------------------------------------------------------------------------------------

def origin_allowed(origin: str, *, api_key: SourceApiKey | None, own_origin: str) -> bool:
    """May a web page at `origin` call the endpoint (with this key, or with some key when None)?

    Allowed: the site's own origin; INGEST_CORS_ALLOWED_ORIGINS (every key); the key's own list.
    A preflight carries no key, so it is answered for an origin that any active key allows; the
    POST itself is then checked against its key's list.
    """
    origin = origin.rstrip("/")
    if origin == own_origin:
        return True
    global_origins = {item.rstrip("/") for item in settings.INGEST_CORS_ALLOWED_ORIGINS}
    if "*" in global_origins or origin in global_origins:
        return True
    if api_key is not None:
        return "*" in api_key.origins or origin in api_key.origins
    candidates = SourceApiKey.objects.filter(revoked_at__isnull=True).exclude(allowed_origins="")
    return any("*" in key.origins or origin in key.origins for key in candidates.only("allowed_origins"))


# -- rate limit -----------------------------------------------------------------------------------

def rate_limit_take(*, api_key: SourceApiKey, cost: int, now: float | None = None) -> float | None:
    """Take `cost` tokens from the key's bucket. None when granted, else seconds to wait.

    A token bucket (size `burst`, refilled at `rate_per_minute`) kept in the key's row and changed
    by one conditional UPDATE: refill, check and take happen in a single statement, so any number
    of web processes share one exact limit on PostgreSQL and SQLite alike. The database rather
    than Django's cache because the cache here is per-process by default (LocMem) and its API has
    no atomic read-modify-write: get/set from two processes would lose updates and over-admit.
    The price is one small UPDATE per request, which also records `last_used_at`.
    """
    now = time.time() if now is None else now
    if cost > api_key.burst:
        return float("inf")
    per_second = Cast(F("rate_per_minute"), FloatField()) / Value(60.0)
    elapsed = Greatest(Value(now) - F("refilled_at"), Value(0.0))  # a clock behind never drains
    available = Least(Cast(F("burst"), FloatField()), F("tokens") + elapsed * per_second)
    granted = (
        SourceApiKey.objects.filter(pk=api_key.pk)
        .filter(GreaterThanOrEqual(available, Value(float(cost))))
        .update(tokens=available - Value(float(cost)), refilled_at=Greatest(F("refilled_at"), Value(now)),
                last_used_at=timezone.now())
    )
    if granted:
        return None
    row = SourceApiKey.objects.values("tokens", "refilled_at", "rate_per_minute", "burst").get(pk=api_key.pk)
    rate = row["rate_per_minute"] / 60.0
    have = min(row["burst"], row["tokens"] + max(now - row["refilled_at"], 0.0) * rate)
    return max((cost - have) / rate, 0.001)




def is_browser_use(*, api_key: SourceApiKey, origin: str | None) -> bool:
    """A key that allows web origins is public (it sits in a page), with or without an Origin
    header on this request; and any key sent with an Origin comes from a page."""
    return bool(origin) or bool(api_key.allowed_origins.strip())


def address_limit_take(*, api_key: SourceApiKey, address: str, now: float | None = None) -> float | None:
    """Count one request of `address` with this key. None when allowed, else seconds to wait.

    INGEST_PER_ADDRESS_PER_MINUTE requests per address and key in each minute, so one visitor (or
    a script that lifted the key from the page) cannot drain the key's bucket for every other
    visitor. A counter per minute in Django's cache: `incr` is atomic on Redis, so processes
    sharing a Redis cache share the limit; with the per-process default cache each process
    counts on its own (the key's bucket, in the database, still bounds the total). 0 turns it off.
    """
    limit = getattr(settings, "INGEST_PER_ADDRESS_PER_MINUTE", 30)
    if limit <= 0:
        return None
    now = time.time() if now is None else now
    window = int(now // 60)
    digest = hashlib.sha256(address.encode()).hexdigest()[:32]
    counter = f"ingest-address:{api_key.prefix}:{digest}:{window}"
    cache.add(counter, 0, timeout=120)
    try:
        count = cache.incr(counter)
    except ValueError:  # evicted between add and incr
        cache.set(counter, 1, timeout=120)
        count = 1
    if count <= limit:
        return None
    return max((window + 1) * 60 - now, 1.0)
