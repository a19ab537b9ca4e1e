"""HTTP ingest for sources without a Kafka client: API keys, request checks, rate limit, produce.

Kafka stays the single entry. An accepted item is produced to the demand topic, keyed by
`source:id` like every other producer, and the consumer stores it; this module never writes a
Demand. A request is answered 202 only after the broker confirmed delivery of every accepted
item, so "accepted" means "durably in Kafka"; a delivery failure or timeout is a 503 and the
client retries (safe: a demand is stored once per source + id).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field

from confluent_kafka import KafkaException, Producer
from django.conf import settings
from django.db.models import F, FloatField, Value
from django.db.models.functions import Cast, Greatest, Least
from django.db.models.lookups import GreaterThanOrEqual
from django.utils import timezone

from . import schema
from .kafka import demand_key, make_producer
from .models import SourceApiKey

logger = logging.getLogger(__name__)

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


# -- validation -----------------------------------------------------------------------------------

@dataclass(slots=True)
class Outgoing:
    """One accepted item, encoded exactly as it will be produced."""

    index: int
    message_id: str
    key: bytes | None
    value: bytes


@dataclass(slots=True)
class IngestPlan:
    accepted: list[Outgoing] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)  # {"index", "id", "reason"}


def parse_body(*, body: bytes) -> list:
    """The request body as a list of items; refuses what is too big or not JSON."""
    if len(body) > settings.INGEST_MAX_BODY_BYTES:
        raise IngestRefused(413, f"body is {len(body)} bytes; the limit is {settings.INGEST_MAX_BODY_BYTES}")
    try:
        data = json.loads(body)
    except RecursionError:
        raise IngestRefused(400, "body is not valid JSON: nested too deeply") from None
    except ValueError as exc:  # includes invalid UTF-8
        raise IngestRefused(400, f"body is not valid JSON: {exc}") from None
    if not isinstance(data, (list, dict)):
        raise IngestRefused(400, "body must be a demand (JSON object) or an array of demands")
    items = data if isinstance(data, list) else [data]
    if not items:
        raise IngestRefused(400, "empty array: nothing to ingest")
    if len(items) > settings.INGEST_MAX_ITEMS:
        raise IngestRefused(413, f"{len(items)} demands in one request; the limit is {settings.INGEST_MAX_ITEMS}")
    return items


def bind_source(*, items: list, api_key: SourceApiKey) -> None:
    """Fill `source` from the key where absent; refuse the request if any item names another."""
    foreign = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            continue  # not an object: the schema rejects it below, with its reason
        if "source" not in item:
            item["source"] = api_key.source
        elif item["source"] != api_key.source:
            foreign.append({"index": index, "source": item["source"]})
    if foreign:
        raise IngestRefused(
            403, f"this API key may only send demands with source {api_key.source!r}", items=foreign[:20]
        )


def plan_items(*, items: list) -> IngestPlan:
    """Validate each item exactly as the consumer will: encode it, then parse those bytes."""
    plan = IngestPlan()
    for index, item in enumerate(items):
        value = json.dumps(item, ensure_ascii=False).encode("utf-8", errors="surrogatepass")
        item_id = item.get("id") if isinstance(item, dict) and isinstance(item.get("id"), str) else None
        try:
            message = schema.parse_demand(value)
        except schema.InvalidMessage as exc:
            plan.rejected.append({"index": index, "id": item_id, "reason": exc.reason})
            continue
        plan.accepted.append(Outgoing(index=index, message_id=message.message_id, key=demand_key(item), value=value))
    return plan


# -- produce --------------------------------------------------------------------------------------

class DeliveryFailed(Exception):
    """Kafka did not confirm every record in time; nothing may be reported as accepted."""


@dataclass(slots=True)
class Delivered:
    topic: str
    partition: int
    offset: int


_producer: Producer | None = None
_producer_lock = threading.Lock()


def web_producer() -> Producer:
    """One producer per web process (thread-safe); its own delivery timeout bounds every wait."""
    global _producer
    with _producer_lock:
        if _producer is None:
            timeout_ms = int(settings.INGEST_DELIVERY_TIMEOUT * 1000)
            _producer = make_producer(**{"message.timeout.ms": timeout_ms, "linger.ms": 2})
        return _producer


def deliver(
    records: list[tuple[str, bytes | None, bytes, list]], *, producer: Producer | None = None, timeout: float | None = None
) -> list[Delivered]:
    """Produce (topic, key, value, headers) records and wait until the broker confirmed each one.

    Raises DeliveryFailed on any error or when `timeout` passes first. The producer's own
    `message.timeout.ms` equals the timeout, so a record we gave up on is not delivered much later
    behind the client's back (and if it were, the retry it prompted is harmless: same source + id).
    """
    producer = producer or web_producer()
    timeout = settings.INGEST_DELIVERY_TIMEOUT if timeout is None else timeout
    results: list[Delivered | None] = [None] * len(records)
    errors: list[str] = []
    done = threading.Event()
    remaining = [len(records)]
    lock = threading.Lock()

    def on_delivery(index, error, message):
        # Called from whichever thread polls the shared producer: only touch our own state.
        with lock:
            if error is not None:
                errors.append(str(error))
            else:
                results[index] = Delivered(message.topic(), message.partition(), message.offset())
            remaining[0] -= 1
            if remaining[0] == 0:
                done.set()

    for index, (topic, key, value, headers) in enumerate(records):
        try:
            producer.produce(
                topic, value=value, key=key, headers=headers,
                on_delivery=lambda error, message, index=index: on_delivery(index, error, message),
            )
        except BufferError:
            raise DeliveryFailed("the producer's local queue is full; try again shortly") from None
        except KafkaException as exc:
            raise DeliveryFailed(f"could not produce: {exc}") from exc
    deadline = time.monotonic() + timeout + 1.0  # a little past message.timeout.ms: get the verdict
    while not done.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            raise DeliveryFailed(f"Kafka did not confirm {remaining[0]} of {len(records)} record(s) within {timeout:g}s")
        producer.poll(min(left, 0.05))
    if errors:
        raise DeliveryFailed(f"Kafka refused {len(errors)} of {len(records)} record(s): {errors[0]}")
    return results  # type: ignore[return-value]


# -- the whole request ----------------------------------------------------------------------------

@dataclass(slots=True)
class IngestResult:
    status: int
    body: dict
    retry_after: int | None = None


def ingest_request(*, api_key: SourceApiKey, body: bytes, now: float | None = None) -> IngestResult:
    """Check, rate-limit, validate and produce one authenticated request's demands."""
    try:
        items = parse_body(body=body)
        bind_source(items=items, api_key=api_key)
    except IngestRefused as refused:
        return IngestResult(refused.status, {"error": refused.reason, **refused.details})
    wait = rate_limit_take(api_key=api_key, cost=len(items), now=now)
    if wait == float("inf"):
        return IngestResult(
            429, {"error": f"{len(items)} demands in one request; this key accepts at most {api_key.burst} at once"}
        )
    if wait is not None:
        seconds = max(1, int(wait + 0.999))
        return IngestResult(
            429, {"error": f"rate limit of {api_key.rate_per_minute} demands per minute reached; retry after {seconds}s"},
            retry_after=seconds,
        )
    plan = plan_items(items=items)
    if not plan.accepted:
        return IngestResult(422, {"error": "no valid demand in this request", "accepted": [], "rejected": plan.rejected})
    topic = settings.KAFKA_TOPICS[0]
    headers = [("ingest.via", b"http"), ("ingest.key", api_key.prefix.encode())]
    try:
        deliver([(topic, item.key, item.value, headers) for item in plan.accepted])
    except DeliveryFailed as exc:
        logger.warning("HTTP ingest for %s: %s", api_key.source, exc)
        return IngestResult(
            503,
            {
                "error": f"the demands could not be handed to Kafka: {exc}. Nothing from this request is confirmed; "
                "retrying it is safe (a demand is stored once per source and id).",
                "accepted": [],
                "rejected": plan.rejected,
            },
            retry_after=5,
        )
    return IngestResult(
        202,
        {
            "accepted": [{"index": item.index, "id": item.message_id} for item in plan.accepted],
            "rejected": plan.rejected,
        },
    )
