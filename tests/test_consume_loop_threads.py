"""What other threads see of a running consume loop, and what the loop leaves alone in the process.

The embedded dashboard runs the loop in a thread of the web process; the Prometheus exporter and
the heartbeat read it from other threads. They read `snapshot()`; only the loop's own thread
may call its Kafka consumer.
"""

import sys
import threading
import time

import pytest
from confluent_kafka import TopicPartition
from prometheus_client import generate_latest

from demands.monitoring import heartbeat as heartbeat_module
from demands.monitoring.heartbeat import HeartbeatWriter
from demands.monitoring.models import ConsumerHeartbeat
from demands.monitoring.prometheus import ConsumeLoopCollector
from demands.pipeline.loop import ConsumeLoop, ConsumerFailed

from .conftest import REFERENCE, record
from .test_consume_loop import FakeMessage, make_loop

pytestmark = pytest.mark.django_db(transaction=True)

TOPIC = "demand-topic"


class LoopThreadOnlyConsumer:
    """A consumer that refuses (and remembers) every call from a thread other than the one that
    subscribed, as librdkafka expects. It assigns partitions 0 and 1 on its first poll, hands out
    the given records one per poll, then waits for the loop to be stopped."""

    def __init__(self, config, records):
        self.config = config
        self.records = list(records)
        self.owner = None
        self.foreign_calls: list[str] = []
        self.callbacks = {}
        self.assigned = False

    def _check(self, name):
        if self.owner is not None and threading.current_thread() is not self.owner:
            self.foreign_calls.append(f"{name}() from thread {threading.current_thread().name}")
            raise RuntimeError(f"{name}() called from a thread that does not poll this consumer")

    def subscribe(self, topics, **callbacks):
        self.owner = threading.current_thread()
        self.callbacks = callbacks

    def consume(self, num_messages, timeout):
        self._check("consume")
        if not self.assigned:
            self.assigned = True
            self.callbacks["on_assign"](self, [TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)])
        if self.records and timeout:
            return [FakeMessage(self.records.pop(0))]
        time.sleep(min(timeout, 0.01))
        return []

    def commit(self, offsets, asynchronous):
        self._check("commit")
        if asynchronous:
            self.config["on_commit"](None, offsets)

    def assignment(self):
        self._check("assignment")
        return [TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)]

    def position(self, partitions):
        self._check("position")
        return [TopicPartition(tp.topic, tp.partition, 90) for tp in partitions]

    def get_watermark_offsets(self, tp, cached=False):
        self._check("get_watermark_offsets")
        return (0, 100)

    def close(self):
        self._check("close")


def wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.01)


def test_heartbeat_and_metrics_read_a_running_loop_from_other_threads_without_calling_its_consumer():
    holder = {}

    def consumer_factory(config):
        holder["consumer"] = LoopThreadOnlyConsumer(config, [record(REFERENCE, offset=0)])
        return holder["consumer"]

    loop = ConsumeLoop(topics=[TOPIC], group="snapshot-group", dlq_topic="", broadcast=False, create_topics=False,
                       consumer_factory=consumer_factory)
    thread = threading.Thread(target=loop.run, name="consumer")
    thread.start()
    try:
        wait_until(lambda: loop.snapshot().totals["batches"] == 1 and loop.snapshot().lags)
        text = generate_latest(OneCollector(ConsumeLoopCollector())).decode()  # a scrape: this thread
        HeartbeatWriter(loop).beat()  # a heartbeat written from this thread
    finally:
        loop.stop()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert holder["consumer"].foreign_calls == []
    assert 'umsg_consumer_assigned_partitions{group="snapshot-group"} 2.0' in text
    assert 'umsg_consumer_messages_total{group="snapshot-group",outcome="created"} 1.0' in text
    assert 'umsg_consumer_position_lag{group="snapshot-group",partition="1",topic="demand-topic"} 10.0' in text
    beat = ConsumerHeartbeat.objects.get(group="snapshot-group", stopped_at__isnull=True)
    assert beat.assignment == ["demand-topic[0]", "demand-topic[1]"] and beat.messages == 1


class OneCollector:
    def __init__(self, collector):
        self.collector = collector

    def collect(self):
        return self.collector.collect()


def test_the_snapshot_follows_the_loop_from_new_to_stopped():
    loop, _holder, _producer, _events = make_loop([[record(REFERENCE, offset=0), record({**REFERENCE, "id": "2"}, offset=1)]])
    first = loop.snapshot()
    assert (first.state, first.group, first.topics, first.started_at) == ("new", "g", ("demand-topic",), None)
    loop.run()
    last = loop.snapshot()
    assert last.state == "stopped" and last.started_at is not None
    assert dict(last.totals) == {"batches": 1, "created": 2, "duplicates": 0, "rejected": 0}
    assert first.totals["created"] == 0  # a snapshot taken earlier does not change under its reader
    assert loop not in heartbeat_module.running_loops


def test_a_loop_that_gives_up_says_so_in_its_snapshot(monkeypatch):
    from django.db import DatabaseError

    from demands.pipeline import loop as loop_module

    def broken(batch):
        raise DatabaseError("down")

    monkeypatch.setattr(loop_module, "persist_batch", broken)
    loop, _holder, _producer, _events = make_loop([[record(REFERENCE, offset=0)]], max_failures=2)
    with pytest.raises(ConsumerFailed):
        loop.run()
    assert loop.snapshot().state == "failed"


def test_running_a_loop_leaves_the_interpreters_switch_interval_alone():
    before = sys.getswitchinterval()
    loop, _holder, _producer, _events = make_loop([[record(REFERENCE, offset=0)]])
    loop.run()
    assert sys.getswitchinterval() == before


def test_consume_demands_shortens_the_switch_interval_for_its_own_process(monkeypatch):
    from django.core.management import call_command

    from demands.management.commands import consume_demands

    seen = []

    class RecordingLoop:
        def __init__(self, **kwargs):
            pass

        def run(self):
            seen.append(sys.getswitchinterval())

    monkeypatch.setattr(consume_demands, "ConsumeLoop", RecordingLoop)
    monkeypatch.setattr(consume_demands, "tune_garbage_collector", lambda: None)  # not this test process's gc
    monkeypatch.setattr(consume_demands.signal, "signal", lambda *args: None)  # keep pytest's handlers
    before = sys.getswitchinterval()
    try:
        call_command("consume_demands")
    finally:
        sys.setswitchinterval(before)
    assert seen == [min(before, 0.0005)]
