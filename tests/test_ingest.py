import pytest

from demands.pipeline.persist import persist_batch
from demands.models import Demand, Priority, RejectedMessage, Status

from .conftest import REFERENCE, record

pytestmark = pytest.mark.django_db


def test_reference_message_becomes_one_demand_with_its_kafka_origin():
    result = persist_batch([record(REFERENCE, offset=41, partition=3)])
    assert [demand.message_id for demand in result.created] == ["123456"]
    demand = Demand.objects.get()
    assert (demand.source, demand.type, demand.content) == ("web_app", "user_feedback", "页面加载太慢,请优化。")
    assert (demand.kafka_topic, demand.kafka_partition, demand.kafka_offset) == ("demand-topic", 3, 41)
    assert demand.status == Status.NEW
    assert demand.priority == Priority.NORMAL
    assert demand.received_at is not None


def test_second_delivery_of_same_message_creates_nothing():
    persist_batch([record(REFERENCE, offset=1)])
    result = persist_batch([record(REFERENCE, offset=1)])
    assert result.created == []
    assert result.duplicates == 1
    assert Demand.objects.count() == 1


def test_same_message_twice_in_one_batch_is_stored_once():
    result = persist_batch([record(REFERENCE, offset=1), record(REFERENCE, offset=2)])
    assert len(result.created) == 1
    assert result.duplicates == 1
    assert Demand.objects.get().kafka_offset == 1


def test_same_id_from_two_sources_is_two_demands():
    persist_batch([record(REFERENCE, offset=1), record({**REFERENCE, "source": "ios_app"}, offset=2)])
    assert Demand.objects.count() == 2


def test_message_priority_and_tags_are_stored():
    persist_batch([record({**REFERENCE, "priority": "urgent", "tags": ["perf"], "region": "cn-east"})])
    demand = Demand.objects.get()
    assert demand.priority == Priority.URGENT
    assert demand.tags == ["perf"]
    assert demand.extra == {"region": "cn-east"}


def test_invalid_message_is_kept_with_reason_and_does_not_block_the_rest():
    result = persist_batch([record(b"{broken", offset=5, partition=2, key=b"k"), record(REFERENCE, offset=6, partition=2)])
    assert len(result.created) == 1
    assert len(result.rejected) == 1
    rejected = RejectedMessage.objects.get()
    assert (rejected.topic, rejected.partition, rejected.offset) == ("demand-topic", 2, 5)
    assert rejected.payload_text == "{broken"
    assert rejected.key == "k"
    assert "not valid JSON" in rejected.reason
    assert Demand.objects.count() == 1


def test_redelivered_invalid_message_is_recorded_once():
    persist_batch([record(b"nope", offset=9)])
    persist_batch([record(b"nope", offset=9)])
    assert RejectedMessage.objects.count() == 1


def test_invalid_utf8_payload_is_shown_with_replacement_characters():
    persist_batch([record(b"\xff\xfeabc", offset=1)])
    assert RejectedMessage.objects.get().payload_text == "\ufffd\ufffdabc"
