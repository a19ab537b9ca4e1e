"""Hostile records through the real broker: each is stored or rejected (and dead-lettered with its
reason), the consume loop keeps going, and the good record after them is stored."""

import json

import pytest

from demands.models import Demand, RejectedMessage

from ..conftest import REFERENCE
from .conftest import RunningLoop, produce, read_all, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

HOSTILE = [
    (json.dumps({**REFERENCE, "id": "nul-key", "a\x00b": 1}).encode(), b"key\x00with\xffbinary"),
    (json.dumps({**REFERENCE, "id": "surrogate", "x": {"k\ud800": 1}}).encode(), None),
    (json.dumps({**REFERENCE, "id": "early", "timestamp": "0001-01-01T00:00:00+01:00"}).encode(), None),
    (b"[" * 100_000 + b"]" * 100_000, None),
    (json.dumps({**REFERENCE, "id": "long", "content": "界" * 20_001}).encode(), None),
    (b"\xff\xfe\x00", b"\x00"),
    (json.dumps({**REFERENCE, "id": "<script>alert(1)</script>", "content": "=cmd|' /C calc'!A0"}).encode(), None),
]


def test_hostile_records_are_rejected_or_stored_and_the_loop_goes_on(topic):
    key = b"one-partition"  # one partition, so "after" is really after them
    values = [value for value, _ in HOSTILE] + [json.dumps({**REFERENCE, "id": "after"}).encode()]
    produce(topic, values, keys=[key] * len(values))
    with RunningLoop(topic, "hostile-group") as running:
        wait_for(lambda: Demand.objects.filter(message_id="after").exists(), running=running)
    assert sorted(Demand.objects.values_list("message_id", flat=True)) == ["<script>alert(1)</script>", "after"]
    rejected = list(RejectedMessage.objects.order_by("offset"))
    assert len(rejected) == len(HOSTILE) - 1
    assert all(r.reason for r in rejected)
    dead = read_all(f"{topic}.dlq", expected=len(rejected), timeout=30)
    assert len(dead) == len(rejected)
    assert all(dict(message.headers())["dlq.reason"] for message in dead)
