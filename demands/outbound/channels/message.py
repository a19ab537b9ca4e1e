"""What every channel renders: a title, a few lines, the demand's link and one-click actions,
already in the recipient's language; plus the plain-text guards for chat markdown."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

_CONTROL = {code: " " for code in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]}
# Content comes from anyone who can send a demand: no links, mentions or HTML of theirs in a card.
_MARKUP = {ord("<"): "‹", ord(">"): "›", ord("["): "［", ord("]"): "］", ord("*"): "∗", ord("`"): "'",
           ord("@"): "＠", ord("~"): "～", ord("|"): "｜"}


@dataclass(slots=True)
class Message:
    title: str
    lines: list[str]
    url: str
    link_label: str
    actions: list[tuple[str, str]] = field(default_factory=list)  # (label, absolute URL)
    urgent: bool = False
    event: str = ""  # notification.<kind> (the signed webhook's event)
    data: dict = field(default_factory=dict)  # structured, for the signed webhook


def plain(text: str, limit: int = 300) -> str:
    """One line of someone's text, safe inside chat markdown."""
    text = " ".join(str(text).translate(_CONTROL).split()).translate(_MARKUP).lstrip("#> ")  # no heading or quote of theirs
    return text if len(text) <= limit else text[: limit - 1] + "…"


def markdown(message: Message, *, heading: str = "### ") -> str:
    """The Markdown dialect WeCom and DingTalk share: a heading, lines, links."""
    parts = [f"{heading}{plain(message.title, 200)}", *(plain(line) for line in message.lines)]
    links = [f"[{message.link_label}]({message.url})", *(f"[{label}]({url})" for label, url in message.actions)]
    parts.append("  ·  ".join(links))
    return "\n\n".join(parts)


def encode(payload: dict) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def json_error(answer: bytes, *keys: str) -> str | None:
    """"<platform> error <code>: <message>" when the answer's code under `keys` is not 0."""
    try:
        data = json.loads(answer or b"{}")
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    for key in keys:
        if key in data and data[key] not in (0, "0"):
            return f"error {data[key]}: {plain(data.get('errmsg') or data.get('msg') or '', 100)}"
    return None
