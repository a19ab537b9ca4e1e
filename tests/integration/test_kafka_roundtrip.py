"""Against the real broker: the reference message, redelivery, the DLQ, and a crash before commit."""

import json
import uuid

import pytest

from demands.pipeline.offsets import OffsetCommitter
from demands.models import Demand, RejectedMessage

from ..conftest import REFERENCE
from .conftest import RunningLoop, produce, read_all, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def encoded(message: dict) -> bytes:
    return json.dumps(message, ensure_ascii=False).encode()


def group() -> str:
    return f"it-group-{uuid.uuid4().hex[:8]}"


def test_reference_message_round_trip(topic):
    produce(topic, [encoded(REFERENCE)], keys=[b"web_app:123456"])
    with RunningLoop(topic, group()) as running:
        wait_for(lambda: Demand.objects.exists(), running=running)
    demand = Demand.objects.get()
    assert (demand.message_id, demand.type, demand.source) == ("123456", "user_feedback", "web_app")
    assert demand.content == "页面加载太慢,请优化。"
    assert demand.kafka_topic == topic
    assert demand.kafka_partition in (0, 1, 2)
    assert demand.kafka_offset == 0
    assert demand.kafka_timestamp is not None


def test_same_message_twice_is_one_demand(topic):
    produce(topic, [encoded(REFERENCE), encoded(REFERENCE)])  # unkeyed: may land on two partitions
    with RunningLoop(topic, group()) as running:
        wait_for(lambda: running.loop.totals["created"] + running.loop.totals["duplicates"] == 2, running=running)
    assert Demand.objects.count() == 1


def test_invalid_message_is_rejected_dead_lettered_and_the_next_one_still_stored(topic):
    key = b"same-partition"
    produce(topic, [b"{not json", encoded({**REFERENCE, "id": "after-bad"})], keys=[key, key])
    with RunningLoop(topic, group()) as running:
        wait_for(lambda: Demand.objects.filter(message_id="after-bad").exists(), running=running)
    rejected = RejectedMessage.objects.get()
    assert rejected.topic == topic and rejected.offset == 0
    assert "not valid JSON" in rejected.reason
    [dead] = read_all(f"{topic}.dlq", expected=1)
    assert dead.value() == b"{not json"
    headers = dict(dead.headers())
    assert b"not valid JSON" in headers["dlq.reason"]
    assert headers["dlq.topic"] == topic.encode()


class SimulatedCrash(BaseException):
    """Escapes the loop's retry handling, as a process dying between the two commits would."""


def test_consumer_stopped_before_its_commit_gets_the_batch_again_without_duplicates(topic, monkeypatch):
    messages = [encoded({**REFERENCE, "id": f"c{i}"}) for i in range(20)]
    produce(topic, messages)
    consumer_group = group()

    def crash(self, records):
        raise SimulatedCrash("killed after the database commit, before the offset commit")

    with monkeypatch.context() as patch:
        patch.setattr(OffsetCommitter, "commit", crash)
        with RunningLoop(topic, consumer_group) as first:
            wait_for(lambda: first.error is not None)
        assert isinstance(first.error, SimulatedCrash)
    stored_before_restart = Demand.objects.count()
    assert stored_before_restart > 0

    with RunningLoop(topic, consumer_group) as second:
        wait_for(lambda: Demand.objects.count() == 20, running=second)
        # The crashed batch came back (nothing was committed) and changed nothing.
        wait_for(lambda: second.loop.totals["duplicates"] >= stored_before_restart, running=second)
    assert Demand.objects.count() == 20
    assert sorted(Demand.objects.values_list("message_id", flat=True)) == sorted(f"c{i}" for i in range(20))


def test_committed_offsets_mean_a_restart_reads_nothing_again(topic):
    produce(topic, [encoded({**REFERENCE, "id": f"r{i}"}) for i in range(5)])
    consumer_group = group()
    with RunningLoop(topic, consumer_group) as running:
        wait_for(lambda: Demand.objects.count() == 5, running=running)
    produce(topic, [encoded({**REFERENCE, "id": "late"})])
    with RunningLoop(topic, consumer_group) as running:
        wait_for(lambda: Demand.objects.filter(message_id="late").exists(), running=running)
        assert running.loop.totals["duplicates"] == 0
