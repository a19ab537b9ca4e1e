"""The unified message spec: raw Kafka bytes → a validated DemandMessage, or InvalidMessage(reason).

The reference format every source already sends is accepted exactly as it is:

    {"id": "123456", "type": "user_feedback", "content": "页面加载太慢,请优化。",
     "timestamp": "2025-04-05T10:30:00Z", "source": "web_app"}

Optional fields are additions, never requirements: `priority` and `tags` are understood, and any
other field is kept verbatim in `extra`. No Django here, so the parser is cheap to test and fuzz.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

MAX_MESSAGE_BYTES = 1024 * 1024
MAX_CONTENT_CHARS = 20_000
MAX_ID_CHARS = 128
MAX_NAME_CHARS = 64
MAX_TAGS = 20
MAX_TAG_CHARS = 50
MAX_NESTING = 32
MAX_REASON_CHARS = 500
# Timestamps a demand may carry: the UTC value must stay a day inside Python's year 1–9999 range,
# so storing it (SQLite converts to UTC) and showing it in any time zone never overflows.
EARLIEST_TIMESTAMP = datetime(1, 1, 2, tzinfo=timezone.utc)
LATEST_TIMESTAMP = datetime(9999, 12, 30, tzinfo=timezone.utc)

PRIORITIES = ("urgent", "high", "normal", "low")
# Names sources commonly use for the same four levels.
PRIORITY_ALIASES = {
    "critical": "urgent",
    "blocker": "urgent",
    "p0": "urgent",
    "p1": "high",
    "p2": "normal",
    "medium": "normal",
    "p3": "low",
    "minor": "low",
    "紧急": "urgent",
    "高": "high",
    "中": "normal",
    "普通": "normal",
    "低": "low",
}
REQUIRED_FIELDS = ("id", "type", "content", "timestamp", "source")
_REQUIRED_SET = frozenset(REQUIRED_FIELDS)
# type and source become filter values and URL parameters: keep them to a sane alphabet.
NAME_PATTERN = re.compile(r"^[\w.\-:/]+$")


class InvalidMessage(ValueError):
    """The message cannot become a demand; `reason` says why in words staff can act on."""

    def __init__(self, reason: str):
        reason = _storable_reason(reason)
        super().__init__(reason)
        self.reason = reason


def _storable_reason(reason: str) -> str:
    """Reasons quote field names from the message; they go into a text column and a Kafka header,
    so a NUL or a lone surrogate there must not fail the batch, nor a huge key bloat the row."""
    reason = reason.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[: MAX_REASON_CHARS - 1] + "…"
    return reason


@dataclass(slots=True)
class DemandMessage:
    message_id: str
    type: str
    source: str
    content: str
    occurred_at: datetime
    priority: str | None = None
    tags: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


def parse_demand(raw: bytes | str | None) -> DemandMessage:
    """Validate one message value. Raises InvalidMessage with a clear reason."""
    if raw is None:
        raise InvalidMessage("message has no value (null/tombstone record)")
    if isinstance(raw, (bytes, bytearray, memoryview)):
        raw = bytes(raw)
        if len(raw) > MAX_MESSAGE_BYTES:
            raise InvalidMessage(f"message is {len(raw)} bytes; the limit is {MAX_MESSAGE_BYTES}")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidMessage(f"message is not valid UTF-8 (byte {exc.start}: {exc.reason})") from None
    elif isinstance(raw, str):
        text = raw
        if len(text) > MAX_MESSAGE_BYTES:
            raise InvalidMessage(f"message is longer than {MAX_MESSAGE_BYTES} characters")
    else:
        raise InvalidMessage(f"message value must be bytes or text, got {type(raw).__name__}")
    if not text.strip():
        raise InvalidMessage("message is empty")
    try:
        data = json.loads(text)
    except RecursionError:
        raise InvalidMessage("message is not valid JSON: nested too deeply") from None
    except ValueError as exc:
        raise InvalidMessage(f"message is not valid JSON: {exc}") from None
    return demand_from_dict(data)


def demand_from_dict(data: object) -> DemandMessage:
    """Validate an already-decoded JSON value (also used by the HTTP ingest endpoint)."""
    if not isinstance(data, dict):
        raise InvalidMessage(f"message must be a JSON object, got {_json_type(data)}")
    if not data.keys() >= _REQUIRED_SET:
        missing = [name for name in REQUIRED_FIELDS if name not in data]
        raise InvalidMessage("missing required field(s): " + ", ".join(missing))

    message_id = _required_string(data, "id", MAX_ID_CHARS)
    type_ = _name(data, "type")
    source = _name(data, "source")
    content = data["content"]
    if not isinstance(content, str):
        raise InvalidMessage(f"field 'content' must be a string, got {_json_type(content)}")
    if not content.strip():
        raise InvalidMessage("field 'content' is empty")
    if len(content) > MAX_CONTENT_CHARS:
        raise InvalidMessage(f"field 'content' has {len(content)} characters; the limit is {MAX_CONTENT_CHARS}")
    _check_storable(content, "content")
    occurred_at = _timestamp(data["timestamp"])

    if len(data) == len(REQUIRED_FIELDS):
        extra = {}
    else:
        extra = {key: value for key, value in data.items() if key not in _REQUIRED_SET}
        _check_extra(extra)
    priority = _priority(extra.pop("priority", None), extra)
    tags = _tags(extra.pop("tags", None), extra)
    return DemandMessage(
        message_id=message_id,
        type=type_,
        source=source,
        content=content,
        occurred_at=occurred_at,
        priority=priority,
        tags=tags,
        extra=extra,
    )


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _required_string(data: dict, name: str, limit: int) -> str:
    value = data[name]
    if not isinstance(value, str):
        raise InvalidMessage(f"field '{name}' must be a string, got {_json_type(value)}")
    value = value.strip()
    if not value:
        raise InvalidMessage(f"field '{name}' is empty")
    if len(value) > limit:
        raise InvalidMessage(f"field '{name}' has {len(value)} characters; the limit is {limit}")
    _check_storable(value, name)
    return value


# Types and sources are few and repeat in every message: each valid one is checked once.
_valid_names: set[str] = set()
_MAX_VALID_NAMES = 10_000


def _name(data: dict, name: str) -> str:
    value = data[name]
    if value.__class__ is str and value in _valid_names:
        return value
    value = _required_string(data, name, MAX_NAME_CHARS)
    if not NAME_PATTERN.match(value):
        raise InvalidMessage(
            f"field '{name}' may contain only letters, digits and . _ - : / (got {value[:MAX_NAME_CHARS]!r})"
        )
    if value == data[name]:  # as sent, nothing stripped: the same text is valid next time
        if len(_valid_names) >= _MAX_VALID_NAMES:
            _valid_names.clear()
        _valid_names.add(value)
    return value


def _check_storable(value: str, name: str) -> None:
    # PostgreSQL text and jsonb cannot hold NUL, and lone surrogates (legal in JSON escapes) cannot
    # be encoded as UTF-8: either would fail the whole batch's transaction later, so refuse here.
    if "\x00" in value:
        raise InvalidMessage(f"field '{name}' contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidMessage(f"field '{name}' contains an unpaired UTF-16 surrogate") from None


def _check_extra(value: object) -> None:
    """Raise InvalidMessage if anything in the optional fields cannot be stored. The common case
    (everything storable) is checked without building the path that a reason names."""
    if not _storable_extra(value, 0):
        _explain_extra(value)


def _storable_extra(value: object, depth: int) -> bool:
    if depth > MAX_NESTING:
        return False
    kind = value.__class__
    if kind is str:
        return "\x00" not in value and (value.isascii() or _encodes(value))
    if kind is dict:
        return all(
            key.__class__ is str and "\x00" not in key and (key.isascii() or _encodes(key)) and _storable_extra(item, depth + 1)
            for key, item in value.items()
        )
    if kind is list:
        return all(_storable_extra(item, depth + 1) for item in value)
    if kind is float:
        return math.isfinite(value)
    return kind is int or kind is bool or value is None


def _encodes(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _explain_extra(value: object, path: str = "", depth: int = 0) -> None:
    """The slow walk that names the field: only for optional fields that _storable_extra refused."""
    if depth > MAX_NESTING:
        raise InvalidMessage(f"field '{path.lstrip('.')}' is nested deeper than {MAX_NESTING} levels")
    if isinstance(value, str):
        _check_storable(value, path.lstrip("."))
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_storable(key, f"{path}.{key}".lstrip("."))
            _explain_extra(item, f"{path}.{key}", depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _explain_extra(item, f"{path}[{index}]", depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        # json.loads accepts NaN and Infinity; jsonb does not.
        raise InvalidMessage(f"field '{path.lstrip('.')}' is not a finite number")


def _timestamp(value: object) -> datetime:
    if not isinstance(value, str):
        raise InvalidMessage(f"field 'timestamp' must be an ISO 8601 string, got {_json_type(value)}")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidMessage(
            f"field 'timestamp' is not an ISO 8601 date-time (e.g. 2025-04-05T10:30:00Z): {value[:40]!r}"
        ) from None
    if parsed.tzinfo is None:
        raise InvalidMessage(
            f"field 'timestamp' has no time zone; add Z or an offset (e.g. 2025-04-05T10:30:00Z): {value[:40]!r}"
        )
    try:
        in_range = EARLIEST_TIMESTAMP <= parsed <= LATEST_TIMESTAMP
    except OverflowError:  # comparing converts to UTC, which can leave year 1–9999
        in_range = False
    if not in_range:
        raise InvalidMessage(f"field 'timestamp' is out of range (years 0001–9999 in UTC): {value[:40]!r}")
    return parsed


def _priority(value: object, extra: dict) -> str | None:
    """An optional field never rejects a demand: an unknown value is kept in extra for staff."""
    if value is None:
        return None
    if isinstance(value, str):
        key = value.strip().lower()
        if key in PRIORITIES:
            return key
        if key in PRIORITY_ALIASES:
            return PRIORITY_ALIASES[key]
    extra["unrecognised_priority"] = value
    return None


def _tags(value: object, extra: dict) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
        extra["unrecognised_tags"] = value
        return []
    tags: list[str] = []
    for tag in value:
        tag = tag.strip()[:MAX_TAG_CHARS]
        if tag and tag not in tags:
            tags.append(tag)
    return tags[:MAX_TAGS]
