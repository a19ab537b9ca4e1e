"""Against the real broker: lag from committed offsets and watermarks, a live consumer's heartbeat, /readyz."""

import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from django.conf import settings
from django.utils import timezone

from demands.monitoring.lag import LagReader
from demands.monitoring.models import ConsumerHeartbeat, LagSample
from demands.monitoring.monitor import Monitor

from ..integration.conftest import RunningLoop, produce, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def topic():
    admin = AdminClient(dict(settings.KAFKA_CLIENT_CONFIG))
    name = f"mon-{uuid.uuid4().hex[:10]}"
    for future in admin.create_topics([NewTopic(name, num_partitions=2), NewTopic(f"{name}.dlq", num_partitions=1)]).values():
        future.result(timeout=15)
    yield name
    admin.delete_topics([name, f"{name}.dlq"], operation_timeout=10)


def test_lag_is_read_per_partition_from_the_groups_commits_and_the_high_watermarks(topic):
    group = f"mon-group-{uuid.uuid4().hex[:8]}"
    produce(topic, [b"a", b"b", b"c"], keys=None)
    consumer = Consumer({**settings.KAFKA_CLIENT_CONFIG, "group.id": group, "enable.auto.commit": False})
    try:
        highs = [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in (0, 1)]
        committed_on_0 = min(highs[0], 1)
        consumer.commit(offsets=[TopicPartition(topic, 0, committed_on_0)], asynchronous=False)
    finally:
        consumer.close()

    partitions = LagReader().read(group=group, topics=[topic])

    assert [(p.partition, p.high) for p in partitions] == [(0, highs[0]), (1, highs[1])]
    assert [p.committed for p in partitions] == [committed_on_0, None]  # partition 1: never committed
    assert [p.lag for p in partitions] == [highs[0] - committed_on_0, highs[1]]
    assert sum(p.lag for p in partitions) == 3 - committed_on_0


def test_a_running_consumer_has_a_live_heartbeat_and_the_monitor_sees_its_lag_drop_to_zero(topic):
    group = f"mon-group-{uuid.uuid4().hex[:8]}"
    produce(topic, [b'{"id": "%d", "type": "t", "source": "s", "content": "c", "timestamp": "2025-04-05T10:30:00Z"}' % i for i in range(4)])
    with RunningLoop(topic, group, broadcast=False) as running:
        wait_for(lambda: running.loop.totals["created"] == 4, running=running)
        wait_for(lambda: ConsumerHeartbeat.objects.filter(group=group, stopped_at__isnull=True).exists(), running=running)
        monitor = Monitor(lag_reader=LagReader(), broadcast=False)
        result = monitor.tick()
        assert "lag" not in result.errors
        samples = LagSample.objects.filter(group=group)
        assert {s.partition for s in samples} == {0, 1}
        assert sum(s.lag for s in samples) == 0
    heartbeat = ConsumerHeartbeat.objects.get(group=group)
    assert heartbeat.stopped_at is not None and heartbeat.state(timezone.now(), 30) == "stopped"


def test_readyz_reaches_the_real_broker(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json()["checks"] == {"database": "ok", "broker": "ok"}
