"""HTTP ingest for sources without a Kafka client: API keys, request checks, rate limit, produce.

Kafka stays the single entry. An accepted item is produced to the demand topic, keyed by
`source:id` like every other producer, and the consumer stores it; this module never writes a
Demand. A request is answered 202 only after the broker confirmed delivery of every accepted
item, so "accepted" means "durably in Kafka"; a delivery failure or timeout is a 503 and the
client retries (safe: a demand is stored once per source + id).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from django.conf import settings

from .. import schema
from ..kafka import DeliveryFailed, deliver, demand_key
from .keys import IngestRefused, rate_limit_take
from .models import SourceApiKey

logger = logging.getLogger(__name__)


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
