"""A signed generic webhook (another service: the seed's "system modules"). Signed like alert
webhooks (monitoring.webhooks): `X-Umsg-Signature: t=<unix s>,sha256=<hex HMAC-SHA256 of "<t>." +
body>` — the timestamp is inside the signed bytes, so a receiver rejecting old timestamps is safe
from replays (`webhooks.verify_signature`); `X-Umsg-Event: notification.<kind>`."""

from ...monitoring.webhooks import EVENT_HEADER, SIGNATURE_HEADER, sign
from .message import Message, encode

HEADERS = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "unified-msg-notifications/1"}


def request(target: str, secret: str, message: Message, *, now: float) -> tuple[str, bytes, dict]:
    body = encode({"event": message.event, "title": message.title, "url": message.url,
                   "actions": {label: url for label, url in message.actions}, **message.data})
    headers = {**HEADERS, EVENT_HEADER: message.event}
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, int(now), body)
    return target, body, headers


def check(answer: bytes) -> str | None:
    return None
