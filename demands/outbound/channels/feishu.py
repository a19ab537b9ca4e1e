"""飞书 Feishu / Lark custom bot with 签名校验: `timestamp` (s) and `sign` = base64 of
HMAC-SHA256(key=timestamp + "\n" + secret, msg=b"") in the body, beside an interactive card
(header, lark_md text, buttons). The answer is {"code": 0, …} (older bots: "StatusCode")."""

import base64
import hashlib
import hmac

from .message import Message, encode, json_error, plain

HEADERS = {"Content-Type": "application/json; charset=utf-8"}


def signature(secret: str, timestamp: int) -> str:
    return base64.b64encode(hmac.new(f"{timestamp}\n{secret}".encode(), b"", hashlib.sha256).digest()).decode()


def card(message: Message) -> dict:
    buttons = [{"tag": "button", "text": {"tag": "plain_text", "content": message.link_label}, "url": message.url,
                "type": "primary"}]
    buttons += [{"tag": "button", "text": {"tag": "plain_text", "content": label}, "url": url, "type": "default"}
                for label, url in message.actions]
    return {
        "config": {"wide_screen_mode": True},
        "header": {"title": {"tag": "plain_text", "content": plain(message.title, 200)},
                   "template": "red" if message.urgent else "blue"},
        "elements": [
            {"tag": "div", "text": {"tag": "lark_md", "content": "\n".join(plain(line) for line in message.lines)}},
            {"tag": "action", "actions": buttons},
        ],
    }


def request(target: str, secret: str, message: Message, *, now: float) -> tuple[str, bytes, dict]:
    body: dict = {}
    if secret:
        timestamp = int(now)
        body = {"timestamp": str(timestamp), "sign": signature(secret, timestamp)}
    body.update({"msg_type": "interactive", "card": card(message)})
    return target, encode(body), dict(HEADERS)


def check(answer: bytes) -> str | None:
    return json_error(answer, "code", "StatusCode")
