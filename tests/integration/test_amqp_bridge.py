"""RabbitMQ → bridge_amqp → Kafka, against a real RabbitMQ (services/rabbitmq.sh with its own state
dir and ports, started once per session) and the real Kafka broker.

The bridge is a real `manage.py bridge_amqp` subprocess; publishers use persistent messages and
publisher confirms. Kafka may hold a record more than once (at-least-once); none may be missing.
The slow test kills the bridge with SIGKILL three times and restarts RabbitMQ once mid-stream,
then runs the product's consumer on the topic: every demand stored exactly once.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pika
import pika.exceptions
import pytest
from confluent_kafka import Consumer

from demands.models import Demand, RejectedMessage

from .conftest import RunningLoop, wait_for
from .processes import (
    SHARED_KAFKA,
    ManagedProcess,
    PrivateService,
    assert_everything_committed,
    child_env,
    free_ports,
    wait_until,
)

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
logging.getLogger("pika").setLevel(logging.CRITICAL)  # lines (and tracebacks) per connection attempt otherwise
SOURCE = "web_app"


class PrivateRabbitMQ(PrivateService):
    """Our own broker (services/rabbitmq.sh with its own state dir, AMQP/distribution/epmd ports)."""

    script, script_timeout = "rabbitmq.sh", 300

    def __init__(self):
        self.port, self.dist_port, self.epmd_port = free_ports(3)
        self.state_dir = Path(tempfile.mkdtemp(prefix="umsg-amqp-rabbit-", dir="/var/tmp"))
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def script_env(self) -> dict:
        return {**os.environ, "UMSG_STATE_DIR": str(self.state_dir), "UMSG_RABBITMQ_PORT": str(self.port),
                "UMSG_RABBITMQ_DIST_PORT": str(self.dist_port), "UMSG_RABBITMQ_EPMD_PORT": str(self.epmd_port)}

    def connect(self) -> pika.BlockingConnection:
        return pika.BlockingConnection(pika.URLParameters(self.url))

    def queue_depth(self, queue: str) -> tuple[int, int]:
        """(ready messages, consumers), by a passive declare."""
        connection = self.connect()
        try:
            ok = connection.channel().queue_declare(queue, passive=True).method
            return ok.message_count, ok.consumer_count
        finally:
            connection.close()


@pytest.fixture(scope="session")
def rabbitmq():
    for attempt in (1, 2):
        broker = PrivateRabbitMQ()
        try:
            broker.start()
            break
        except RuntimeError as exc:
            broker.destroy()  # whatever the failed start left (its epmd), then the state dir
            if not RABBIT_BIN.exists():
                pytest.skip(f"rabbitmq-server is not installed and could not be installed (apt-get as root): {exc}")
            # Other test runs on this machine take ports from the same range: one more try on others.
            if attempt == 2:
                raise
    yield broker
    broker.destroy()


def demand(i: int) -> dict:
    return {"id": f"{i:06d}", "type": "user_feedback", "content": f"页面加载太慢,请优化。#{i}",
            "timestamp": "2025-04-05T10:30:00Z", "source": SOURCE}


def invalid_body(i: int) -> bytes:
    """Every other one is not JSON; the rest are JSON without the required fields."""
    if i % 2:
        return f"{{not json #{i}".encode()
    return json.dumps({"id": f"bad{i:04d}", "source": SOURCE}).encode()


class Publisher:
    """Publishes bodies to a durable queue with persistent delivery and publisher confirms, at about
    `rate` per second in all, from `threads` connections (a confirm waits for RabbitMQ's fsync, so
    one connection does ~100/s on a busy machine); rides out a broker restart by reconnecting and
    publishing the unconfirmed message again (so RabbitMQ may hold it twice: at-least-once)."""

    def __init__(self, broker: PrivateRabbitMQ, queue: str, bodies: list[bytes], *, rate: float | None = None,
                 threads: int = 4):
        self.broker, self.queue, self.bodies, self.rate = broker, queue, bodies, rate
        self.confirmed = 0
        self.reconnects = 0
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(n, threads), daemon=True) for n in range(threads)]

    def _channel(self, deadline: float):
        while True:
            try:
                connection = self.broker.connect()
                channel = connection.channel()
                channel.queue_declare(self.queue, durable=True)
                channel.confirm_delivery()
                return connection, channel
            except pika.exceptions.AMQPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def _run(self, first: int, step: int):
        try:
            deadline = time.monotonic() + 150
            connection, channel = self._channel(deadline)
            started = time.monotonic()
            for n, i in enumerate(range(first, len(self.bodies), step)):
                properties = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent, message_id=f"msg-{i}",
                                                  content_type="application/json", headers={"seq": i, "origin": "it"})
                while True:
                    try:
                        channel.basic_publish("", self.queue, self.bodies[i], properties, mandatory=True)
                        break
                    except pika.exceptions.AMQPError:  # broker restarting: publish again once it is back
                        with self._lock:
                            self.reconnects += 1
                        connection, channel = self._channel(deadline)
                with self._lock:
                    self.confirmed += 1
                if self.rate:
                    ahead = (n + 1) * step / self.rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
            connection.close()
        except BaseException as exc:  # surfaced by join()
            self.errors.append(exc)

    def start(self) -> "Publisher":
        for thread in self.threads:
            thread.start()
        return self

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(deadline - time.monotonic(), 0.1))
        assert not any(t.is_alive() for t in self.threads), f"publisher not done within {timeout:.0f}s ({self.confirmed} confirmed)"
        assert not self.errors, f"publisher failed: {self.errors[0]!r}"


def bridge_process(broker, *, queue: str, topic: str, log_dir: Path, prefetch: int = 200) -> ManagedProcess:
    args = [sys.executable, "manage.py", "bridge_amqp", "--topic", topic, "--stats-interval", "5"]
    env = child_env({"AMQP_URL": broker.url, "AMQP_QUEUES": queue, "AMQP_PREFETCH": str(prefetch),
                     "AMQP_MAX_FAILURES": "10", "LOG_LEVEL": "INFO"})
    return ManagedProcess(args, env=env, log_dir=log_dir, name="bridge")


class TopicReader:
    """Reads a topic from the start, keeping every record's (key, value, headers)."""

    def __init__(self, topic: str):
        self.consumer = Consumer({"bootstrap.servers": SHARED_KAFKA, "group.id": f"reader-{uuid.uuid4().hex}",
                                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
        self.consumer.subscribe([topic])
        self.records: list[tuple[bytes | None, bytes, dict]] = []

    def read_until(self, done, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done(self.records):
            assert time.monotonic() < deadline, f"only {len(self.records)} records within {timeout}s"
            for message in self.consumer.consume(1000, 0.5):
                if message.error() is None:
                    self.records.append((message.key(), message.value(), dict(message.headers() or [])))

    def close(self):
        self.consumer.close()


def ids_in(records) -> set[str]:
    ids = set()
    for _key, value, _headers in records:
        try:
            ids.add(json.loads(value)["id"])
        except (ValueError, KeyError, TypeError):
            continue
    return ids


@pytest.fixture
def logs(tmp_path):
    return tmp_path


def test_demands_reach_kafka_keyed_with_their_origin_in_headers(rabbitmq, new_topic, started, logs):
    topic, queue = new_topic(), f"demands-{uuid.uuid4().hex[:8]}"
    count = 300
    bodies = [json.dumps(demand(i), ensure_ascii=False).encode() for i in range(count)] + [invalid_body(1), invalid_body(2)]
    Publisher(rabbitmq, queue, bodies).start().join(60)
    bridge = bridge_process(rabbitmq, queue=queue, topic=topic, log_dir=logs)
    started.append(bridge)
    bridge.start()
    reader = TopicReader(topic)
    try:
        reader.read_until(lambda records: len(records) >= len(bodies), timeout=60)
    finally:
        reader.close()
    assert bridge.stop(30) == 0, bridge.log()

    by_value = {value: (key, headers) for key, value, headers in reader.records}
    assert set(by_value) == set(bodies)  # every body, unchanged
    for i in range(count):
        key, headers = by_value[bodies[i]]
        assert key == f"{SOURCE}:{i:06d}".encode()
        assert headers["amqp.queue"] == queue.encode()
        assert headers["amqp.exchange"] == b""
        assert headers["amqp.routing_key"] == queue.encode()
        assert headers["amqp.message_id"] == f"msg-{i}".encode()
        assert int(headers["amqp.delivery_tag"]) >= 1
        assert headers["amqp.header.seq"] == str(i).encode()
        assert headers["amqp.header.origin"] == b"it"
    assert by_value[invalid_body(1)][0] is None  # not JSON: unkeyed, the consumer says why
    assert by_value[invalid_body(2)][0] == f"{SOURCE}:bad0002".encode()  # JSON with source and id: keyed
    # Everything acked: nothing left in the queue, and the bridge's consumer is gone.
    assert rabbitmq.queue_depth(queue) == (0, 0)
    log = bridge.log()
    assert "amqp: connected, consuming" in log and "bridge closed" in log
    assert "SIGTERM" in log


def test_a_message_not_confirmed_by_kafka_stays_in_rabbitmq(rabbitmq, started, logs):
    """Kafka unreachable: nothing is acked; SIGTERM exits 0 and RabbitMQ still has every message."""
    queue = f"demands-{uuid.uuid4().hex[:8]}"
    bodies = [json.dumps(demand(i), ensure_ascii=False).encode() for i in range(20)]
    Publisher(rabbitmq, queue, bodies).start().join(30)
    [dead_port] = free_ports(1)
    bridge = bridge_process(rabbitmq, queue=queue, topic="amqp-unreachable", log_dir=logs)
    bridge.env = {**bridge.env, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{dead_port}"}
    bridge.args += ["--drain-timeout", "2"]
    started.append(bridge)
    bridge.start()
    wait_until(lambda: rabbitmq.queue_depth(queue) == (0, 1), timeout=30, what="bridge holding the messages")
    time.sleep(1)
    assert bridge.stop(60) == 0, bridge.log()
    assert rabbitmq.queue_depth(queue) == (len(bodies), 0)
    assert "bridge closed: 20 received, 0 forwarded, 0 acked" in bridge.log()


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.django_db(transaction=True)
def test_kills_and_a_broker_restart_lose_nothing_and_store_each_demand_once(rabbitmq, new_topic, started, logs):
    topic, queue = new_topic(), f"demands-{uuid.uuid4().hex[:8]}"
    count, invalid = 10_000, 40
    rng = random.Random()
    bodies = [json.dumps(demand(i), ensure_ascii=False).encode() for i in range(count)]
    bad = [invalid_body(i) for i in range(invalid)]
    for body in bad:  # spread through the stream
        bodies.insert(rng.randrange(len(bodies)), body)

    t0 = time.monotonic()
    publisher = Publisher(rabbitmq, queue, bodies, rate=len(bodies) / 30).start()  # ~30 s of traffic
    bridge = bridge_process(rabbitmq, queue=queue, topic=topic, log_dir=logs)
    started.append(bridge)
    bridge.start()
    # Three SIGKILLs at random moments, and one broker restart, all while the publisher runs.
    kill_times = sorted(rng.uniform(3, 28) for _ in range(3))
    restart_at = rng.uniform(8, 20)
    events = sorted([(at, "kill") for at in kill_times] + [(restart_at, "restart")])
    for at, what in events:
        time.sleep(max(0.0, at - (time.monotonic() - t0)))
        if what == "kill":
            bridge.kill()  # SIGKILL: nothing drained, nothing acked after this instant
            bridge.start()
        else:
            rabbitmq.stop()  # a clean broker stop: both publisher and bridge lose their connection
            rabbitmq.start()
    publisher.join(150 - (time.monotonic() - t0))
    assert publisher.reconnects >= 1  # the restart did hit the publisher

    reader = TopicReader(topic)
    expected_ids = {f"{i:06d}" for i in range(count)} | {f"bad{i:04d}" for i in range(0, invalid, 2)}
    try:
        reader.read_until(lambda records: expected_ids <= ids_in(records) and
                          sum(value.startswith(b"{not json") for _k, value, _h in records) >= invalid // 2, timeout=60)
    finally:
        reader.close()
    assert bridge.stop(30) == 0, bridge.log()
    assert rabbitmq.queue_depth(queue) == (0, 0)  # everything acked
    assert len(bridge.exit_codes) == 4 and bridge.exit_codes[-1] == 0  # three kills, one clean stop
    log = bridge.log()
    # The restart hit a running bridge (connection lost), or one starting up (cannot connect).
    assert "amqp: connection lost" in log or "amqp: cannot connect" in log, log

    # The product's consumer on the topic: every demand stored exactly once, every bad body rejected.
    group = f"amqp-it-{uuid.uuid4().hex[:8]}"
    with RunningLoop(topic, group, batch_size=500) as running:
        wait_for(lambda: Demand.objects.count() == count and RejectedMessage.objects.count() >= invalid,
                 timeout=90, running=running)
        wait_for(lambda: _committed(topic, group), timeout=30, running=running)
    identities = list(Demand.objects.values_list("source", "message_id"))
    assert len(identities) == count
    assert set(identities) == {(SOURCE, f"{i:06d}") for i in range(count)}
    rejected = {bytes(payload): reason for payload, reason in RejectedMessage.objects.values_list("payload", "reason")}
    assert set(rejected) == set(bad)  # each bad body (perhaps more than once), nothing else
    assert all(reason for reason in rejected.values())
    assert any("JSON" in reason for reason in rejected.values())
    duplicates = len(reader.records) - len(bodies)
    print(f"\nkills at {', '.join(f'{t:.0f}' for t in kill_times)} s, broker restart at {restart_at:.0f} s; "
          f"{len(reader.records)} records in Kafka for {len(bodies)} bodies ({duplicates} re-delivered), "
          f"publisher reconnects {publisher.reconnects}, {time.monotonic() - t0:.0f}s")


def _committed(topic: str, group: str) -> bool:
    try:
        assert_everything_committed(SHARED_KAFKA, group, topic, 3)
        return True
    except AssertionError:
        return False
