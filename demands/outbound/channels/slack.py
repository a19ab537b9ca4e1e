"""Slack incoming webhook: {"text": fallback, "blocks": [section (mrkdwn), actions (buttons)]};
Slack answers "ok", or an HTTP error."""

from .message import Message, encode, plain

HEADERS = {"Content-Type": "application/json; charset=utf-8"}


def _escape(text: str) -> str:  # Slack's three control characters
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def request(target: str, secret: str, message: Message, *, now: float) -> tuple[str, bytes, dict]:
    title = _escape(plain(message.title, 200))
    text = "\n".join([f"*{title}*", *(_escape(plain(line)) for line in message.lines)])
    buttons = [{"type": "button", "text": {"type": "plain_text", "text": message.link_label}, "url": message.url,
                **({"style": "danger"} if message.urgent else {})}]
    buttons += [{"type": "button", "text": {"type": "plain_text", "text": label}, "url": url} for label, url in message.actions]
    body = {"text": title, "blocks": [
        {"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}},
        {"type": "actions", "elements": buttons[:5]},
    ]}
    return target, encode(body), dict(HEADERS)


def check(answer: bytes) -> str | None:
    return None
