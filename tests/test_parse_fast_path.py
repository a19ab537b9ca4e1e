"""The ingest hot path parses with shortcuts (orjson, a cache of valid type/source names, a check of
the optional fields that builds no paths). Each shortcut must give exactly what the reference
parser `schema.parse_demand` gives: the same demand, or the same rejection reason."""

import json

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from demands import schema
from demands.pipeline.parse import parse_record

from .test_schema_properties import encodings, json_value, message_dict, odd_text

fast_settings = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Numbers orjson reads differently from json (beyond 64 bits, or overflowing a double), and ones
# it reads the same; strings a database cannot hold.
tricky_number = st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**30, int("9" * 400), 1e308, 5e-324, -0.0, 0.1])
tricky_value = st.recursive(
    json_value | tricky_number | st.sampled_from(["a\x00b", "\ud800", "价格", ""]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(odd_text, children, max_size=3),
    max_leaves=12,
)
valid_with_extras = st.fixed_dictionaries(
    {
        "id": st.sampled_from(["123456", " 42 ", "订单-7"]),
        "type": st.sampled_from(["user_feedback", " log_exception", "api_anomaly ", "bad type"]),
        "source": st.sampled_from(["web_app", "ios_app", "a/b:c.d-e"]),
        "content": st.sampled_from(["页面加载太慢,请优化。", "Timeout after 30 s", "x"]),
        "timestamp": st.sampled_from(["2025-04-05T10:30:00Z", "2025-04-05T10:30:00", "0001-01-01T00:00:00+01:00"]),
    },
    optional={"priority": tricky_value, "tags": tricky_value | st.lists(odd_text, max_size=4)},
).flatmap(lambda d: st.dictionaries(odd_text, tricky_value, max_size=3).map(lambda more: {**more, **d}))


def outcome(parse, raw):
    try:
        return "accepted", parse(raw)
    except schema.InvalidMessage as exc:
        return "rejected", exc.reason


def nested(depth: int, leaf):
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


@fast_settings
@given(st.one_of(valid_with_extras, message_dict).flatmap(lambda m: st.sampled_from(encodings(m))))
@example(json.dumps({"id": "1", "type": "t", "content": "c", "timestamp": "2025-04-05T10:30:00Z", "source": "s",
                     "big": 2**70}).encode())
@example(json.dumps({"id": "1", "type": "t", "content": "c", "timestamp": "2025-04-05T10:30:00Z", "source": "s",
                     "huge": int("9" * 400)}).encode())
@example(json.dumps({"id": "1", "type": "t", "content": "c", "timestamp": "2025-04-05T10:30:00Z", "source": "s",
                     "deep": nested(schema.MAX_NESTING + 1, 1)}).encode())
def test_the_fast_parser_accepts_and_rejects_exactly_as_the_reference_parser(raw):
    expected = outcome(schema.parse_demand, raw)
    assert outcome(parse_record, raw) == expected
    assert outcome(parse_record, raw) == expected  # and again, now that its names are cached


@fast_settings
@given(tricky_value | st.builds(nested, st.integers(schema.MAX_NESTING - 1, schema.MAX_NESTING + 2), tricky_value))
@example({"a\x00": 1})
@example({"k": ["\ud800"]})
@example(float("nan"))
def test_the_quick_check_of_optional_fields_refuses_exactly_what_the_explaining_walk_refuses(value):
    try:
        schema._explain_extra(value)
        refused = False
    except schema.InvalidMessage:
        refused = True
    assert (not schema._storable_extra(value, 0)) == refused


def test_a_name_is_cached_only_as_sent_so_stripping_and_refusals_stay_the_same():
    base = {"id": "1", "content": "c", "timestamp": "2025-04-05T10:30:00Z", "source": "web_app"}
    assert schema.demand_from_dict({**base, "type": " spaced "}).type == "spaced"
    assert " spaced " not in schema._valid_names
    assert schema.demand_from_dict({**base, "type": "spaced"}).type == "spaced"
    assert "spaced" in schema._valid_names
    for bad in ("has space", "", 7, "x" * (schema.MAX_NAME_CHARS + 1)):
        try:
            schema.demand_from_dict({**base, "type": bad})
        except schema.InvalidMessage:
            pass
        else:  # pragma: no cover
            raise AssertionError(f"{bad!r} was accepted")
        assert bad not in schema._valid_names
