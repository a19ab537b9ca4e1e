import json
from datetime import datetime, timezone

import pytest

from demands import schema
from demands.schema import InvalidMessage, parse_demand

from .conftest import REFERENCE


def encode(value) -> bytes:
    try:
        return json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:  # a lone surrogate only travels as a \\u escape
        return json.dumps(value).encode()


def test_reference_message_is_accepted_exactly_as_sources_send_it():
    message = parse_demand(encode(REFERENCE))
    assert message.message_id == "123456"
    assert message.type == "user_feedback"
    assert message.source == "web_app"
    assert message.content == "页面加载太慢,请优化。"
    assert message.occurred_at == datetime(2025, 4, 5, 10, 30, tzinfo=timezone.utc)
    assert message.priority is None
    assert message.tags == []
    assert message.extra == {}


def test_reference_message_with_ascii_escaped_chinese_is_the_same_demand():
    assert parse_demand(json.dumps(REFERENCE).encode()).content == "页面加载太慢,请优化。"


def test_optional_fields_are_understood_and_unknown_ones_kept():
    message = parse_demand(
        encode({**REFERENCE, "priority": "HIGH", "tags": ["mobile", "mobile", " perf "], "user": {"id": 7}, "trace_id": "abc"})
    )
    assert message.priority == "high"
    assert message.tags == ["mobile", "perf"]
    assert message.extra == {"user": {"id": 7}, "trace_id": "abc"}


@pytest.mark.parametrize(("given", "expected"), [("P0", "urgent"), ("critical", "urgent"), ("紧急", "urgent"), ("medium", "normal"), ("low", "low")])
def test_priority_aliases_map_to_the_four_levels(given, expected):
    assert parse_demand(encode({**REFERENCE, "priority": given})).priority == expected


def test_unrecognised_optional_values_never_reject_the_demand():
    message = parse_demand(encode({**REFERENCE, "priority": 5, "tags": {"a": 1}}))
    assert message.priority is None
    assert message.tags == []
    assert message.extra == {"unrecognised_priority": 5, "unrecognised_tags": {"a": 1}}


def test_comma_separated_tags_are_split():
    assert parse_demand(encode({**REFERENCE, "tags": "a, b,,c"})).tags == ["a", "b", "c"]


def test_timestamp_with_offset_is_kept_with_its_offset():
    message = parse_demand(encode({**REFERENCE, "timestamp": "2025-04-05T18:30:00+08:00"}))
    assert message.occurred_at == datetime(2025, 4, 5, 10, 30, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("raw", "reason_part"),
    [
        (b"", "empty"),
        (b"not json", "not valid JSON"),
        (b"\xff\xfe{}", "not valid UTF-8"),
        (b"[1, 2]", "must be a JSON object, got an array"),
        (b'"text"', "must be a JSON object, got a string"),
        (b"null", "must be a JSON object, got null"),
        (b"[" * 100_000 + b"]" * 100_000, "JSON"),
    ],
)
def test_undecodable_messages_are_rejected_with_a_reason(raw, reason_part):
    with pytest.raises(InvalidMessage) as info:
        parse_demand(raw)
    assert reason_part in info.value.reason


def test_null_record_value_is_rejected():
    with pytest.raises(InvalidMessage, match="no value"):
        parse_demand(None)


@pytest.mark.parametrize("missing", ["id", "type", "content", "timestamp", "source"])
def test_each_required_field_is_required(missing):
    data = {key: value for key, value in REFERENCE.items() if key != missing}
    with pytest.raises(InvalidMessage, match=f"missing required field\\(s\\): {missing}"):
        parse_demand(encode(data))


@pytest.mark.parametrize(
    ("field", "value", "reason_part"),
    [
        ("id", 123456, "'id' must be a string, got a number"),
        ("id", "   ", "'id' is empty"),
        ("id", "x" * 129, "limit is 128"),
        ("type", None, "'type' must be a string, got null"),
        ("type", "user feedback", "may contain only"),
        ("source", "<script>", "may contain only"),
        ("content", ["a"], "'content' must be a string, got an array"),
        ("content", "", "'content' is empty"),
        ("content", "长" * (schema.MAX_CONTENT_CHARS + 1), "limit is 20000"),
        ("content", "a\x00b", "NUL"),
        ("content", "\ud800", "surrogate"),
        ("timestamp", 1712312400, "must be an ISO 8601 string"),
        ("timestamp", "yesterday", "not an ISO 8601"),
        ("timestamp", "2025-04-05T10:30:00", "no time zone"),
        ("timestamp", "2025-13-05T10:30:00Z", "not an ISO 8601"),
    ],
)
def test_wrong_fields_are_rejected_with_a_reason_naming_the_field(field, value, reason_part):
    with pytest.raises(InvalidMessage) as info:
        parse_demand(encode({**REFERENCE, field: value}))
    assert reason_part in info.value.reason


def test_extra_fields_that_the_database_cannot_store_are_rejected():
    with pytest.raises(InvalidMessage, match="NUL"):
        parse_demand(encode({**REFERENCE, "meta": {"note": "a\x00"}}))
    with pytest.raises(InvalidMessage, match="finite"):
        parse_demand(b'{"id":"1","type":"t","content":"c","timestamp":"2025-04-05T10:30:00Z","source":"s","x":NaN}')


def test_deeply_nested_extra_field_is_rejected():
    nested: dict = {}
    cursor = nested
    for _ in range(schema.MAX_NESTING + 5):
        cursor["a"] = {}
        cursor = cursor["a"]
    with pytest.raises(InvalidMessage, match="nested deeper"):
        parse_demand(encode({**REFERENCE, "meta": nested}))


def test_oversized_message_is_rejected_before_parsing():
    with pytest.raises(InvalidMessage, match="the limit is"):
        parse_demand(b" " * (schema.MAX_MESSAGE_BYTES + 1))
