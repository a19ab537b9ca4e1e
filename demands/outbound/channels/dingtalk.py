"""钉钉 DingTalk custom robot with 加签: `timestamp` (ms) and `sign` = url-encoded base64 of
HMAC-SHA256(key=secret, msg=timestamp + "\n" + secret) as query parameters; the body is
{"msgtype": "markdown", "markdown": {"title", "text"}}; the answer {"errcode": 0, …}."""

import base64
import hashlib
import hmac
from urllib.parse import quote_plus

from .message import Message, encode, json_error, markdown, plain

HEADERS = {"Content-Type": "application/json; charset=utf-8"}


def signature(secret: str, timestamp_ms: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest).decode())


def request(target: str, secret: str, message: Message, *, now: float) -> tuple[str, bytes, dict]:
    url = target
    if secret:
        timestamp = int(now * 1000)
        url += f"{'&' if '?' in url else '?'}timestamp={timestamp}&sign={signature(secret, timestamp)}"
    body = {"msgtype": "markdown", "markdown": {"title": plain(message.title, 100), "text": markdown(message)[:4000]}}
    return url, encode(body), dict(HEADERS)


def check(answer: bytes) -> str | None:
    return json_error(answer, "errcode")
