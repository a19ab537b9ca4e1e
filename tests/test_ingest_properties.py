"""Property-based fuzzing of ingest: whatever the parser accepts is stored (and shown) without a
database error, and whatever it rejects is kept with its reason — on PostgreSQL and on SQLite."""

import itertools
import json
import math

import pytest
from django.db import transaction
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from demands.pipeline.parse import IncomingMessage
from demands.pipeline.persist import persist_batch
from demands.models import Demand, RejectedMessage
from demands.schema import InvalidMessage, parse_demand

from .conftest import REFERENCE
from .test_schema_properties import encodings, message_dict, odd_text

pytestmark = pytest.mark.django_db

# Database fixtures are function-scoped on purpose: examples share the test's transaction, and
# distinct offsets keep their rows apart.
fuzz_settings = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
offsets = itertools.count()

valid_message = st.fixed_dictionaries(
    {
        "id": st.text(min_size=1, max_size=128).filter(lambda s: s.strip() and "\x00" not in s),
        "type": st.from_regex(r"[\w.\-:/]{1,64}", fullmatch=True).filter(str.strip),
        "source": st.from_regex(r"[\w.\-:/]{1,64}", fullmatch=True).filter(str.strip),
        "content": odd_text.filter(lambda s: s.strip()),
        "timestamp": st.sampled_from(["2025-04-05T10:30:00Z", "0001-01-02T00:00:00+00:00", "9999-12-29T23:59:59.999999-14:00"]),
    },
    optional={"priority": odd_text, "tags": st.lists(odd_text, max_size=25), "extra": st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | odd_text,
        lambda children: st.lists(children, max_size=3) | st.dictionaries(odd_text, children, max_size=3),
        max_leaves=10,
    )},
)


def same_json(a, b) -> bool:
    """JSON equality up to number representation (PostgreSQL's jsonb reads 1e300 back as an int)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b))
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=1e-12)
    return a == b


def ingest_one(raw: bytes, key: bytes | None, client) -> None:
    offset = next(offsets)
    rec = IncomingMessage(topic="demand-topic", partition=0, offset=offset, value=raw, key=key)
    try:
        expected = parse_demand(raw)
    except InvalidMessage:
        expected = None
    with transaction.atomic():  # as the consume loop does; a failing example leaves the next ones a usable transaction
        result = persist_batch([rec])  # must not raise, whatever the bytes
    if expected is None:
        assert [r for r, _ in result.rejected] == [rec]
        stored = RejectedMessage.objects.get(topic="demand-topic", partition=0, offset=offset)
        assert stored.reason and bytes(stored.payload) == raw
        assert client.get("/rejected/").status_code == 200
        return
    assert len(result.created) + result.duplicates == 1
    demand = Demand.objects.get(source=expected.source, message_id=expected.message_id)
    if result.created:
        assert (demand.type, demand.content, demand.tags) == (expected.type, expected.content, expected.tags)
        assert demand.occurred_at == expected.occurred_at
        assert same_json(demand.extra, expected.extra)
    response = client.get(f"/demands/{demand.pk}/")
    assert response.status_code == 200


@pytest.fixture
def viewer_client(client, viewer_user):
    client.force_login(viewer_user)
    return client


@fuzz_settings
@given(message_dict, st.none() | st.binary(max_size=40))
@example({**REFERENCE, "a\x00b": 1}, b"key\x00with-nul")  # both once failed the whole batch on PostgreSQL
def test_anything_the_parser_sees_is_stored_or_rejected_without_a_database_error(viewer_client, message, key):
    for raw in encodings(message):
        ingest_one(raw, key, viewer_client)


@fuzz_settings
@given(valid_message)
def test_every_message_the_parser_accepts_is_stored_and_shown(viewer_client, message):
    for raw in encodings(message):
        ingest_one(raw, None, viewer_client)


@fuzz_settings
@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_stored_as_rejected_messages(viewer_client, raw):
    ingest_one(raw, raw[:10], viewer_client)


def test_a_batch_mixing_odd_records_stores_each_once():
    values_and_keys = [
        (json.dumps({**REFERENCE, "content": "<script>alert(1)</script>\u202e"}).encode(), b"\x00\xff"),
        (json.dumps({**REFERENCE, "id": "2", "x\x00": 1}).encode(), b"a\x00b"),
        (b"\xff\xfe", b"k"),
        (None, None),
    ]
    records = [IncomingMessage(topic="t", partition=1, offset=i, value=v, key=k) for i, (v, k) in enumerate(values_and_keys)]
    result = persist_batch(records)
    assert len(result.created) == 1 and len(result.rejected) == 3
    assert RejectedMessage.objects.get(offset=1).key == "a\ufffdb"  # a NUL cannot go into a text column
    assert persist_batch(records).duplicates == 1  # and again: nothing new
    assert RejectedMessage.objects.count() == 3
