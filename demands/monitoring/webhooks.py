"""Outgoing webhooks: a JSON POST signed with HMAC-SHA256, as Stripe and GitHub sign theirs.

Headers sent with every delivery (the same delivery id on every retry, so receivers can dedupe):

    Content-Type: application/json
    X-Umsg-Event: alert.firing | alert.renotify | alert.resolved
    X-Umsg-Delivery: <delivery id>
    X-Umsg-Signature: t=<unix seconds>,sha256=<hex HMAC-SHA256 of "<t>." + body>

A receiver recomputes the HMAC over the timestamp, a dot and the raw body with the shared secret,
compares in constant time, and rejects timestamps far from its clock (replays). `verify_signature`
below is that check.

A rule's URL is typed by staff and sent from inside the network, so `post_webhook` is careful with
where it goes: the host is resolved once and every address checked (no loopback, link-local,
private, multicast, reserved or unspecified address unless WEBHOOK_ALLOWED_HOSTS names the host or
a network holding it), and the connection goes to the checked address — a second lookup could
answer differently. Redirects are not followed and proxy variables are ignored (both would send
the request somewhere unchecked), and one deadline bounds the whole delivery. Failures carry a
generic message for the pages (no "Connection refused" port-scan oracle); the detail goes to the
server log.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import socket
import threading
import time
from urllib.parse import urlsplit

from django.conf import settings
from django.utils.translation import gettext_noop

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Umsg-Signature"
EVENT_HEADER = "X-Umsg-Event"
DELIVERY_HEADER = "X-Umsg-Delivery"

# Shown to staff (stored in AlertDelivery.last_error): what went wrong, never where or why exactly.
CONNECTION_FAILED = gettext_noop("Connection failed")
TARGET_REFUSED = gettext_noop("Target address not allowed (WEBHOOK_ALLOWED_HOSTS)")
TIMED_OUT = gettext_noop("Connection failed (deadline passed)")


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


def mask_url(url: str) -> str:
    """scheme://host[:port]/… — incoming-webhook URLs carry their key in the path or query, so only
    superusers see them whole."""
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "…"
    return f"{parts.scheme}://{parts.hostname or ''}{port}/…"


def _allowed() -> tuple[set[str], list]:
    hosts, networks = set(), []
    for entry in getattr(settings, "WEBHOOK_ALLOWED_HOSTS", []):
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            hosts.add(entry.strip().lower().rstrip("."))
    return hosts, networks


def _internal(address) -> bool:
    if getattr(address, "ipv4_mapped", None):
        address = address.ipv4_mapped
    return (
        address.is_loopback or address.is_link_local or address.is_private or address.is_multicast
        or address.is_reserved or address.is_unspecified
    )


def resolve_target(host: str, port: int) -> str:
    """The one address to connect to: every address the host resolves to must be allowed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        logger.warning("webhook host %r does not resolve: %s", host, exc)
        raise WebhookError(CONNECTION_FAILED) from exc
    addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
    hosts, networks = _allowed()
    if host.lower().rstrip(".") not in hosts:
        for address in addresses:
            if _internal(address) and not any(address in network for network in networks):
                logger.warning("webhook to %s refused: it resolves to %s (not in WEBHOOK_ALLOWED_HOSTS)", host, address)
                raise WebhookError(TARGET_REFUSED)
    return str(addresses[0])


def post_webhook(
    url: str, payload: dict, *, secret: str, event: str, delivery_id: int, timestamp: int, timeout: float = 5.0
) -> int:
    """POST once within `timeout` seconds in all; returns a 2xx status, raises WebhookError otherwise."""
    body = encode(payload)
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "unified-msg-alerts/1",
        EVENT_HEADER: f"alert.{event}",
        DELIVERY_HEADER: str(delivery_id),
    }
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, timestamp, body)
    return post(url, body, headers, timeout=timeout, label=f"webhook delivery {delivery_id}")


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float = 5.0, label: str = "webhook",
         check=None) -> int:
    """The one outgoing POST for staff-typed URLs (alert webhooks, notification channels): the
    target checked as above, one deadline, no redirects, no proxies. Returns a 2xx status, raises
    WebhookError otherwise — also when `check(first bytes of the answer)` returns an error text
    (chat robots answer 200 with an error code in the body)."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise WebhookError(CONNECTION_FAILED)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = resolve_target(parts.hostname, port)
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    # Host header, SNI and certificate check use the name; the socket goes to the checked address.
    connection = connection_class(parts.hostname, port, timeout=timeout)
    connection._create_connection = lambda _address, *args, **kwargs: socket.create_connection((address, port), *args, **kwargs)
    # Socket timeouts bound each read; this bounds the delivery (a server dripping bytes included).
    deadline = threading.Timer(timeout, _abort, args=(connection,))
    deadline.daemon = True
    started = time.monotonic()
    deadline.start()
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request("POST", target, body=body, headers=headers)
        response = connection.getresponse()
        answer = response.read(4096)
    except (OSError, http.client.HTTPException) as exc:
        passed = time.monotonic() - started >= timeout
        logger.warning("%s to %s (%s) failed: %r", label, parts.hostname, address, exc)
        raise WebhookError(TIMED_OUT if passed else CONNECTION_FAILED) from exc
    finally:
        deadline.cancel()
        connection.close()
    if not 200 <= response.status < 300:  # 3xx included: redirects are not followed
        raise WebhookError(f"HTTP {response.status} {response.reason}"[:200], status=response.status)
    error = check(answer) if check is not None else None
    if error:
        raise WebhookError(error[:200], status=response.status)
    return response.status


def _abort(connection: http.client.HTTPConnection) -> None:
    sock = connection.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
