"""Outgoing webhooks: a JSON POST signed with HMAC-SHA256, as Stripe and GitHub sign theirs.

Headers sent with every delivery (the same delivery id on every retry, so receivers can dedupe):

    Content-Type: application/json
    X-Umsg-Event: alert.firing | alert.renotify | alert.resolved
    X-Umsg-Delivery: <delivery id>
    X-Umsg-Signature: t=<unix seconds>,sha256=<hex HMAC-SHA256 of "<t>." + body>

A receiver recomputes the HMAC over the timestamp, a dot and the raw body with the shared secret,
compares in constant time, and rejects timestamps far from its clock (replays). `verify_signature`
below is that check.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request

SIGNATURE_HEADER = "X-Umsg-Signature"
EVENT_HEADER = "X-Umsg-Event"
DELIVERY_HEADER = "X-Umsg-Delivery"


class WebhookError(Exception):
    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def encode(payload: dict) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},sha256={digest}"


def verify_signature(secret: str, header: str, body: bytes, *, now: float, tolerance: float = 300) -> bool:
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
        expected = sign(secret, timestamp, body)
    except (KeyError, ValueError):
        return False
    return abs(now - timestamp) <= tolerance and hmac.compare_digest(expected, header)


def post_webhook(
    url: str, payload: dict, *, secret: str, event: str, delivery_id: int, timestamp: int, timeout: float = 5.0
) -> int:
    """POST once; returns the HTTP status of a 2xx answer, raises WebhookError otherwise."""
    body = encode(payload)
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "unified-msg-alerts/1",
        EVENT_HEADER: f"alert.{event}",
        DELIVERY_HEADER: str(delivery_id),
    }
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, timestamp, body)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (URL set by admins)
            response.read(1024)
            return response.status
    except urllib.error.HTTPError as exc:
        raise WebhookError(f"HTTP {exc.code} {exc.reason}", status=exc.code) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise WebhookError(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}") from exc
