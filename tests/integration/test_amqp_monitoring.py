"""RabbitMQ in the one inbox, against the real broker (the private one of test_amqp_bridge.py) and
Kafka: the monitor's sample sees a queue's depth, the depth rule fires, and a running bridge shows
as the queue's consumer with its rate."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta

import pika
import pytest
from django.db import connections
from django.utils import timezone

from demands.intake.amqp import AmqpSource
from demands.intake.bridge import Bridge
from demands.monitoring.alerts import evaluate_rules
from demands.monitoring.amqp import BridgeHeartbeatWriter, QueueInspector, sample_amqp
from demands.monitoring.amqp_samples import AmqpQueueSample, BridgeHeartbeat
from demands.monitoring.models import Alert, AlertRule

from .test_amqp_bridge import demand, rabbitmq  # noqa: F401  (the session's private broker)

pytestmark = pytest.mark.django_db(transaction=True)


def publish(url: str, queue: str, count: int) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.queue_declare(queue, durable=True)
        channel.confirm_delivery()
        import json

        for i in range(count):
            channel.basic_publish("", queue, json.dumps(demand(i), ensure_ascii=False).encode(),
                                  pika.BasicProperties(delivery_mode=2), mandatory=True)
    finally:
        connection.close()


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_queue_depth_consumers_and_rate_from_the_real_broker(rabbitmq, new_topic, settings):  # noqa: F811
    queue = f"mon-{uuid.uuid4().hex[:8]}"
    settings.AMQP_CONFIGURED, settings.AMQP_URL, settings.AMQP_QUEUES = True, rabbitmq.url, [queue]
    inspector = QueueInspector(url=rabbitmq.url)
    AlertRule.objects.create(name="AMQP depth", kind=AlertRule.Kind.AMQP_DEPTH_GROWING, threshold=10,
                             window_minutes=5, renotify_minutes=0)
    now = timezone.now()
    publish(rabbitmq.url, queue, 0)  # a fresh, empty queue
    sample_amqp(now=now - timedelta(minutes=2), inspector=inspector)
    publish(rabbitmq.url, queue, 50)  # no bridge running
    sample_amqp(now=now, inspector=inspector)
    sample = AmqpQueueSample.objects.filter(queue=queue).latest("sampled_at")
    assert (sample.ready, sample.depth, sample.consumers, sample.reachable) == (50, 50, 0, True)
    evaluate_rules(now=now)
    alert = Alert.objects.get(resolved_at__isnull=True, rule__kind=AlertRule.Kind.AMQP_DEPTH_GROWING)
    assert f"RabbitMQ queue {queue}: depth 50 and rising" in alert.title

    # A bridge (the real one, in a thread here so its heartbeat lands in the test's database).
    topic = new_topic()
    bridge = Bridge(AmqpSource(url=rabbitmq.url, queues=[queue], prefetch=100), topic=topic,
                    heartbeat=BridgeHeartbeatWriter(), create_topic=False)

    def run():
        try:
            bridge.run()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        def bridged():
            hb = BridgeHeartbeat.objects.filter(queues=queue).first()
            return hb is not None and hb.counters.get(queue, {}).get("forwarded") == 50 and hb.counters[queue]["rate"] > 0

        wait_until(bridged, 60, "the bridge's heartbeat with 50 forwarded")
        later = timezone.now()
        sample_amqp(now=later, inspector=inspector)
        sample = AmqpQueueSample.objects.filter(queue=queue).latest("sampled_at")
        assert sample.consumers == 1 and sample.depth == 0 and sample.rate > 0 and sample.bridged == 50
    finally:
        bridge.stop()
        thread.join(30)
    hb = BridgeHeartbeat.objects.get(queues=queue)
    assert hb.stopped_at is not None and hb.source_state == "stopped"
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq.url))
    connection.channel().queue_delete(queue)
    connection.close()


def test_a_broker_that_is_not_there_is_recorded_as_unreachable(settings):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    settings.AMQP_CONFIGURED, settings.AMQP_QUEUES = True, ["demands"]
    with pytest.raises(Exception):
        sample_amqp(now=timezone.now(), inspector=QueueInspector(url=f"amqp://guest:guest@127.0.0.1:{port}/%2F", timeout=2))
    sample = AmqpQueueSample.objects.get(queue="demands")
    assert not sample.reachable and sample.error


def test_bridge_amqp_with_two_processes_shares_the_queue_and_stops_cleanly(rabbitmq, new_topic, started, tmp_path):  # noqa: F811
    import json
    import sys

    from .processes import ManagedProcess, child_env
    from .test_amqp_bridge import Publisher, TopicReader, ids_in

    topic, queue = new_topic(), f"x2-{uuid.uuid4().hex[:8]}"
    bodies = [json.dumps(demand(i), ensure_ascii=False).encode() for i in range(400)]
    Publisher(rabbitmq, queue, bodies).start().join(60)
    env = child_env({"AMQP_URL": rabbitmq.url, "AMQP_QUEUES": queue, "AMQP_PREFETCH": "50", "LOG_LEVEL": "INFO"})
    bridge = ManagedProcess([sys.executable, "manage.py", "bridge_amqp", "--topic", topic, "--processes", "2"],
                            env=env, log_dir=tmp_path, name="bridge-x2")
    started.append(bridge)
    bridge.start()
    wait_until(lambda: rabbitmq.queue_depth(queue)[1] == 2, 60, "two consumers on the queue")
    reader = TopicReader(topic)
    try:
        reader.read_until(lambda records: len(ids_in(records)) >= len(bodies), timeout=60)
    finally:
        reader.close()
    bridge.signal(__import__("signal").SIGTERM)
    assert bridge.wait(60) == 0, bridge.log()
    assert ids_in(reader.records) == {f"{i:06d}" for i in range(400)}
    assert rabbitmq.queue_depth(queue) == (0, 0)  # every message acked, both consumers gone
    log = bridge.log()
    assert "2 worker processes" in log and log.count("bridge closed") == 2
