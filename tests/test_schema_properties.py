"""Property-based fuzzing of the message parser: every input is a DemandMessage or an InvalidMessage
with a reason that can itself be stored and sent as a Kafka header — never any other exception."""

import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from demands import schema
from demands.schema import DemandMessage, InvalidMessage, parse_demand

from .conftest import REFERENCE

# Every code point, including NUL, C0/C1 controls, lone surrogates and private-use characters.
odd_char = st.characters(exclude_categories=())
odd_text = st.text(odd_char, max_size=40)
json_scalar = st.none() | st.booleans() | st.integers() | st.floats() | odd_text
json_value = st.recursive(
    json_scalar,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(odd_text, children, max_size=4),
    max_leaves=15,
)
name_like = st.from_regex(r"[\w.\-:/]{1,70}", fullmatch=True)
iso_timestamp = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59), timezones=st.none() | st.timezones()
).map(datetime.isoformat)
# Lengths around the limits, built from a repeated character so huge values stay cheap.
around_limit = st.sampled_from([1, schema.MAX_ID_CHARS, schema.MAX_ID_CHARS + 1, schema.MAX_NAME_CHARS + 1,
                                schema.MAX_CONTENT_CHARS, schema.MAX_CONTENT_CHARS + 1])
long_text = st.builds(lambda char, n: char * n, odd_char, around_limit)

field_values = {
    "id": st.one_of(odd_text, long_text, json_value),
    "type": st.one_of(name_like, odd_text, json_value),
    "source": st.one_of(name_like, odd_text, json_value),
    "content": st.one_of(odd_text, long_text, json_value),
    "timestamp": st.one_of(iso_timestamp, odd_text, json_value),
}
message_dict = st.fixed_dictionaries(
    {},
    optional={
        **field_values,
        "priority": st.one_of(st.sampled_from(["P0", "high", "紧急", " Low "]), json_value),
        "tags": st.one_of(st.lists(odd_text, max_size=30), odd_text, json_value),
        "extra": json_value,
        "unrecognised_priority": json_value,
    },
).flatmap(lambda d: st.dictionaries(odd_text, json_value, max_size=3).map(lambda more: {**more, **d}))


def encodings(value) -> list[bytes]:
    """How a source might put `value` on the wire: ASCII-escaped JSON, raw UTF-8, and the invalid
    UTF-8 that naive encoders produce for lone surrogates."""
    escaped = json.dumps(value).encode()
    raw = json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return [escaped, raw]


def assert_storable(text: str) -> None:
    assert "\x00" not in text
    text.encode("utf-8")  # no lone surrogates: PostgreSQL, SQLite and Kafka headers need UTF-8


def parsed_or_rejected(raw) -> DemandMessage | None:
    try:
        message = parse_demand(raw)
    except InvalidMessage as exc:
        assert isinstance(exc.reason, str) and exc.reason.strip(), "a rejection must say why"
        assert_storable(exc.reason)
        assert len(exc.reason) <= schema.MAX_REASON_CHARS
        return None
    assert isinstance(message, DemandMessage)
    assert 1 <= len(message.message_id) <= schema.MAX_ID_CHARS
    assert schema.NAME_PATTERN.match(message.type) and len(message.type) <= schema.MAX_NAME_CHARS
    assert schema.NAME_PATTERN.match(message.source) and len(message.source) <= schema.MAX_NAME_CHARS
    assert message.content.strip() and len(message.content) <= schema.MAX_CONTENT_CHARS
    for text in (message.message_id, message.type, message.source, message.content, *message.tags):
        assert_storable(text)
    assert message.occurred_at.tzinfo is not None
    # Shown in any time zone without overflowing (a year-1 or year-9999 edge would).
    for hours in (-14, 14):
        message.occurred_at.astimezone(timezone(timedelta(hours=hours)))
    assert message.priority in (None, *schema.PRIORITIES)
    assert len(message.tags) <= schema.MAX_TAGS and all(0 < len(tag) <= schema.MAX_TAG_CHARS for tag in message.tags)
    assert_storable(json.dumps(message.extra, ensure_ascii=False, allow_nan=False))
    return message


@given(st.binary(max_size=2000))
def test_arbitrary_bytes_are_parsed_or_rejected_with_a_reason(raw):
    parsed_or_rejected(raw)


@given(odd_text)
def test_arbitrary_text_is_parsed_or_rejected_with_a_reason(raw):
    parsed_or_rejected(raw)


@given(json_value)
def test_any_json_value_is_parsed_or_rejected_with_a_reason(value):
    for raw in encodings(value):
        parsed_or_rejected(raw)


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], max_examples=300)
@given(message_dict)
@example({**REFERENCE, "a\x00b": 1})  # a NUL in a key used to reach the reason (and PostgreSQL)
@example({**REFERENCE, "x": {"k\ud800": 1}})  # so did a lone surrogate
@example({**REFERENCE, "timestamp": "0001-01-01T00:00:00+01:00"})  # before year 1 in UTC
@example({**REFERENCE, "timestamp": "9999-12-31T23:00:00-05:00"})  # after year 9999 in UTC
def test_messages_with_wrong_types_and_odd_values_are_parsed_or_rejected(message):
    for raw in encodings(message):
        parsed_or_rejected(raw)


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(sorted(field_values)), st.just(None), max_size=5).flatmap(
    lambda drop: st.fixed_dictionaries({name: strategy for name, strategy in field_values.items() if name not in drop})
))
def test_near_valid_messages_are_parsed_or_rejected(message):
    for raw in encodings({**message, "priority": "high"}):
        parsed_or_rejected(raw)


@given(st.integers(min_value=1, max_value=200_000), st.sampled_from(["[", '{"a":']))
def test_deep_nesting_is_rejected_with_a_reason_not_a_crash(depth, opener):
    closer = "]" if opener == "[" else "}"
    nested = opener * depth + "1" + closer * depth
    parsed_or_rejected(nested.encode())
    parsed_or_rejected(json.dumps(REFERENCE)[:-1].encode() + b', "extra": ' + nested.encode() + b"}")


def test_extra_fields_nested_beyond_the_limit_are_rejected_by_name():
    value = 1
    for _ in range(schema.MAX_NESTING + 2):
        value = {"deeper": value}
    with pytest.raises(InvalidMessage, match="nested deeper"):
        parse_demand(json.dumps({**REFERENCE, "extra": value}).encode())


@pytest.mark.parametrize(
    "raw",
    [
        b" " * (schema.MAX_MESSAGE_BYTES + 1),
        json.dumps({**REFERENCE, "content": "x" * (schema.MAX_CONTENT_CHARS + 1)}).encode(),
        json.dumps({**REFERENCE, "blob": "界" * 400_000}).encode(),  # 1.2 MB of UTF-8
        json.dumps({**REFERENCE, "id": "9" * 100_000}).encode(),
        b'{"n": ' + b"9" * 5000 + b"}",  # beyond Python's int-string conversion limit
        json.dumps({**REFERENCE, "n": 1e308 * 10}).encode(),  # Infinity
        b"\xef\xbb\xbf" + json.dumps(REFERENCE).encode(),  # a BOM
        json.dumps({**REFERENCE, "k" * 100_000: 1, "v": "\x00"}).encode(),  # a huge key in the reason
    ],
    ids=["over-1MiB", "content-over-limit", "huge-extra", "huge-id", "huge-int", "infinity", "bom", "huge-key"],
)
def test_huge_and_odd_values_are_rejected_with_a_reason(raw):
    assert parsed_or_rejected(raw) is None


@pytest.mark.parametrize("raw", [123, 4.5, ["a"], {"id": 1}, object()])
def test_a_value_that_is_not_bytes_or_text_is_rejected_not_raised(raw):
    with pytest.raises(InvalidMessage, match="bytes or text"):
        parse_demand(raw)


def test_reason_is_made_storable_whatever_it_quotes():
    reason = InvalidMessage("field 'a\x00b\ud800' is bad " + "x" * 10_000).reason
    assert_storable(reason)
    assert "a\\x00b\\ud800" in reason
    assert len(reason) <= schema.MAX_REASON_CHARS
