"""Against the real broker: HTTP ingest into Kafka and on to the database; an unreachable broker; the poison-pill guard."""

import json
import uuid

import pytest

from demands import kafka
from demands.intake import keys
from demands.kafka import make_producer
from demands.pipeline.loop import RejectRatioExceeded
from demands.models import Demand, RejectedMessage

from ..conftest import REFERENCE
from .conftest import RunningLoop, produce, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def group() -> str:
    return f"it-group-{uuid.uuid4().hex[:8]}"


def post(client, body, key):
    return client.post("/api/ingest/", data=json.dumps(body, ensure_ascii=False), content_type="application/json",
                       HTTP_AUTHORIZATION=f"Bearer {key}")


def test_demands_posted_over_http_are_stored_by_the_consumer(topic, settings, client):
    settings.KAFKA_TOPICS = [topic]
    _, key = keys.api_key_create(name="it", source="web_app")
    body = [{k: v for k, v in REFERENCE.items() if k != "source"}, {**REFERENCE, "id": "2", "content": "second"}]
    response = post(client, body, key)
    assert response.status_code == 202, response.content
    assert [item["id"] for item in response.json()["accepted"]] == ["123456", "2"]
    with RunningLoop(topic, group()) as running:
        wait_for(lambda: Demand.objects.count() == 2, running=running)
    demand = Demand.objects.get(message_id="123456")
    assert (demand.source, demand.content, demand.kafka_topic) == ("web_app", "页面加载太慢,请优化。", topic)


def test_an_unreachable_broker_is_a_503_not_an_accept(client, settings, monkeypatch):
    settings.INGEST_DELIVERY_TIMEOUT = 1.0
    # Nothing listens on port 1: librdkafka times the record out after message.timeout.ms.
    unreachable = make_producer(**{"bootstrap.servers": "127.0.0.1:1", "message.timeout.ms": 1000})
    monkeypatch.setattr(kafka, "web_producer", lambda: unreachable)
    _, key = keys.api_key_create(name="it", source="web_app")
    response = post(client, REFERENCE, key)
    assert response.status_code == 503
    assert response.json()["accepted"] == []
    assert "could not be handed to Kafka" in response.json()["error"]


def test_a_stream_of_bad_messages_stops_the_consumer_before_commit_and_is_redelivered_after(topic):
    produce(topic, [b"{broken"] * 6, keys=[b"one-partition"] * 6)
    consumer_group = group()
    with RunningLoop(topic, consumer_group, max_reject_ratio=0.5, reject_window=5) as guarded:
        wait_for(lambda: guarded.error is not None)
    assert isinstance(guarded.error, RejectRatioExceeded)
    assert RejectedMessage.objects.count() < 5  # at most the window, less one, before it judged
    # Nothing of the judged batch was committed: with the guard off, the rest comes back, once.
    with RunningLoop(topic, consumer_group, max_reject_ratio=1) as unguarded:
        wait_for(lambda: RejectedMessage.objects.count() == 6, running=unguarded)
    assert sorted(RejectedMessage.objects.values_list("offset", flat=True)) == list(range(6))
