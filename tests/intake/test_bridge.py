"""The bridge's confirm-then-ack promise, with a fake source and a fake producer (no broker)."""

import json
import os
import signal

import pika
import pytest

from demands.intake.amqp import message_headers, redacted
from demands.intake.bridge import (
    AckTracker,
    Bridge,
    BridgeFailed,
    SourceMessage,
    SourceUnavailable,
    backoff,
    bridge_stats,
    header_value,
    record_key,
)

REFERENCE = {"id": "123456", "type": "user_feedback", "content": "页面加载太慢,请优化。", "timestamp": "2025-04-05T10:30:00Z",
             "source": "web_app"}


def body(i: int) -> bytes:
    return json.dumps({**REFERENCE, "id": f"d{i}"}, ensure_ascii=False).encode()


class FakeSource:
    kind = "fake"

    def __init__(self, queues=("demands",)):
        self.queues = list(queues)
        self.stream = None
        self.generation = 0
        self.is_connected = False
        self.inbox: list[tuple[str, bytes]] = []  # (queue, body) delivered at the next poll
        self.next_tag = 1
        self.actions: list[tuple] = []  # ("ack", stream, tag, multiple) / ("nack", stream, tag)
        self.connect_errors = 0  # the next n connects fail
        self.lose_at_poll = None  # raise SourceUnavailable at this poll
        self.polls = 0
        self.on_poll = None
        self.closed = 0
        self.cancelled = 0

    def describe(self):
        return "fake"

    @property
    def connected(self):
        return self.is_connected

    def connect(self):
        if self.connect_errors:
            self.connect_errors -= 1
            raise SourceUnavailable("connection refused")
        self.generation += 1
        self.stream = (self.generation, 1)
        self.next_tag = 1
        self.is_connected = True

    def send(self, *bodies, queue="demands"):
        self.inbox.extend((queue, b) for b in bodies)

    def poll(self, timeout):
        self.polls += 1
        if self.on_poll is not None:
            self.on_poll(self)
        if self.lose_at_poll == self.polls:
            self.is_connected = False
            raise SourceUnavailable("stream lost")
        messages = []
        for queue, payload in self.inbox:
            messages.append(SourceMessage(self.stream, self.next_tag, queue, payload, [("amqp.queue", queue.encode())]))
            self.next_tag += 1
        self.inbox = []
        return messages

    def ack(self, stream, tag, *, multiple):
        assert stream == self.stream and self.is_connected
        self.actions.append(("ack", stream, tag, multiple))

    def nack(self, stream, tag):
        assert stream == self.stream and self.is_connected
        self.actions.append(("nack", stream, tag))

    def stop_consuming(self):
        self.cancelled += 1

    def depth(self):
        return {queue: {"messages": 0, "consumers": 1} for queue in self.queues}

    def close(self):
        self.closed += 1
        self.is_connected = False

    def acked_tags(self) -> set[int]:
        """Every tag covered by an ack so far (multiple=True covers the earlier unresolved ones)."""
        covered, resolved = set(), set()
        for action in self.actions:
            if action[0] == "nack":
                resolved.add(action[2])
            elif action[3]:
                covered |= {t for t in range(1, action[2] + 1) if t not in resolved}
            else:
                covered.add(action[2])
            resolved |= covered
        return covered


class FakeError:
    def __init__(self, text="Local: Message timed out"):
        self.text = text

    def __str__(self):
        return self.text


class FakeProducer:
    """Holds every produced record until the test confirms or fails it; reports run in poll()."""

    def __init__(self, **config):
        self.config = config
        self.records: list[dict] = []  # everything produced, in order
        self.due: list[tuple[dict, object]] = []  # reports to run at the next poll
        self.fail_on_flush = False

    def produce(self, topic, value=None, key=None, headers=None, on_delivery=None):
        self.records.append({"topic": topic, "value": value, "key": key, "headers": headers, "cb": on_delivery,
                             "reported": False})

    def confirm(self, *indexes, error=None):
        for i in indexes:
            self.due.append((self.records[i], error))

    def poll(self, timeout=0):
        due, self.due = self.due, []
        for record, error in due:
            record["reported"] = True
            record["cb"](error, None)
        return len(due)

    def flush(self, timeout=0):
        for record in self.records:
            if not record["reported"] and all(record is not r for r, _ in self.due):
                self.due.append((record, FakeError() if self.fail_on_flush else None))
        self.poll()
        return 0

    def __len__(self):
        return sum(not r["reported"] for r in self.records)


@pytest.fixture
def source():
    return FakeSource()


def make_bridge(source, **kwargs):
    producers = []

    def factory(**config):
        producers.append(FakeProducer(**config))
        return producers[-1]

    kwargs.setdefault("sleep", lambda seconds: None)
    kwargs.setdefault("topic", "demand-topic")
    bridge = Bridge(source, producer_factory=factory, create_topic=False, **kwargs)
    bridge.open()
    bridge.producers = producers
    return bridge


def turn(bridge, times=1):
    for _ in range(times):
        bridge.step()


def test_producer_is_acks_all_with_the_delivery_timeout(source):
    bridge = make_bridge(source)
    config = bridge.producers[0].config
    assert config["acks"] == "all"
    assert config["message.timeout.ms"] == 60000
    assert callable(config["error_cb"])


def test_nothing_is_acked_before_the_delivery_report(source):
    bridge = make_bridge(source)
    turn(bridge)  # connects
    source.send(body(1), body(2), body(3))
    turn(bridge, 3)
    producer = bridge.producers[0]
    assert [r["value"] for r in producer.records] == [body(1), body(2), body(3)]
    assert source.actions == []
    producer.confirm(0)
    turn(bridge)
    assert source.actions == [("ack", (1, 1), 1, False)]
    assert bridge.stats.snapshot()["totals"]["acked"] == 1


def test_out_of_order_reports_ack_a_run_once_the_head_is_confirmed(source):
    bridge = make_bridge(source)
    turn(bridge)
    source.send(*(body(i) for i in range(1, 6)))
    turn(bridge)
    producer = bridge.producers[0]
    producer.confirm(2, 1, 4)  # tags 3, 2, 5 confirmed; tag 1 still in flight
    turn(bridge)
    assert source.actions == []  # an ack of 3 with multiple would cover the unconfirmed 1
    producer.confirm(0)
    turn(bridge)
    # 1, 2, 3 in one multiple-ack; 5 waits for 4
    assert source.actions == [("ack", (1, 1), 3, True)]
    producer.confirm(3)
    turn(bridge)
    assert source.actions[-1] == ("ack", (1, 1), 5, True)
    assert source.acked_tags() == {1, 2, 3, 4, 5}


def test_a_failed_delivery_is_nacked_and_never_acked(source):
    bridge = make_bridge(source)
    turn(bridge)
    source.send(body(1), body(2), body(3))
    turn(bridge)
    producer = bridge.producers[0]
    producer.confirm(0)
    producer.confirm(1, error=FakeError())
    producer.confirm(2)
    turn(bridge)
    assert source.actions == [("ack", (1, 1), 1, False), ("nack", (1, 1), 2), ("ack", (1, 1), 3, False)]
    assert 2 not in source.acked_tags()
    snapshot = bridge.stats.snapshot()
    assert snapshot["queues"]["demands"] == {"received": 3, "forwarded": 2, "acked": 2, "failed": 1, "nacked": 1}
    # the later success counts: Kafka works again, the failure streak is over
    assert snapshot["kafka_state"] == "up" and snapshot["kafka_failures"] == 0


def test_a_failed_delivery_pauses_producing_for_a_back_off(source):
    now = [100.0]
    bridge = make_bridge(source, clock=lambda: now[0])
    turn(bridge)
    source.send(body(1))
    turn(bridge)
    producer = bridge.producers[0]
    producer.confirm(0, error=FakeError())
    turn(bridge)
    source.send(body(2))  # e.g. the nacked message, re-delivered
    turn(bridge, 3)
    assert len(producer.records) == 1  # paused: 0.5 s after the first failure
    now[0] += 0.6
    turn(bridge)
    assert len(producer.records) == 2
    producer.confirm(1)
    turn(bridge)
    assert bridge.stats.kafka_failures == 0 and bridge.stats.kafka_state == "up"


def test_repeated_kafka_failures_raise(source):
    now = [0.0]
    bridge = make_bridge(source, clock=lambda: now[0], max_failures=3)
    turn(bridge)
    producer = bridge.producers[0]
    with pytest.raises(BridgeFailed, match="kafka delivery failed 3 times"):
        for i in range(10):
            source.send(body(i))
            now[0] += 60
            turn(bridge)
            producer.confirm(len(producer.records) - 1, error=FakeError())
            turn(bridge)
    assert all(action[0] == "nack" for action in source.actions)


def test_multiple_ack_is_per_stream_across_a_reconnect(source):
    bridge = make_bridge(source)
    turn(bridge)
    source.send(body(1), body(2))
    turn(bridge)
    source.lose_at_poll = source.polls + 1
    turn(bridge)  # lost: the broker re-delivers tags 1 and 2 of the old channel
    assert bridge.stats.source_state == "down"
    turn(bridge)  # reconnects: a new stream
    assert source.stream == (2, 1)
    source.send(body(1), body(2))  # re-delivered, with new tags
    turn(bridge)
    producer = bridge.producers[0]
    producer.confirm(0, 1)  # the old channel's records: confirmed, but nothing to ack them on
    turn(bridge)
    assert source.actions == []
    assert bridge.stats.orphaned == 2
    producer.confirm(2, 3)
    turn(bridge)
    assert source.actions == [("ack", (2, 1), 2, True)]
    assert bridge.stats.reconnects == 1


def test_messages_received_before_a_loss_are_not_produced_after_it(source):
    bridge = make_bridge(source)
    turn(bridge)
    bridge._take([SourceMessage((99, 1), 1, "demands", body(1))])  # from a dead stream
    turn(bridge)
    assert bridge.producers[0].records == []


def test_connection_failures_back_off_and_give_up(source):
    slept = []
    source.connect_errors = 100
    bridge = make_bridge(source, max_failures=10, sleep=slept.append)
    with pytest.raises(BridgeFailed, match="10 connection attempts failed"):
        for _ in range(20):
            bridge.step()
    assert slept == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    assert [backoff(n) for n in (1, 2, 7, 50)] == [0.5, 1, 30, 30]


def test_a_successful_connect_resets_the_failure_count(source):
    source.connect_errors = 3
    bridge = make_bridge(source, max_failures=4)
    turn(bridge, 4)
    assert source.connected and bridge.stats.source_failures == 0


def test_connection_state_changes_are_logged_once(source, caplog):
    source.connect_errors = 5
    bridge = make_bridge(source)
    with caplog.at_level("INFO", logger="demands.intake.bridge"):
        turn(bridge, 6)
    lines = [r.getMessage() for r in caplog.records]
    assert sum("cannot connect" in line for line in lines) == 1
    assert sum("reconnected after 5 failed attempt(s)" in line for line in lines) == 1


def test_sigterm_drains_what_is_in_flight_then_returns(source):
    """stop() from a real SIGTERM handler: no more producing, flush, ack the confirmed, close."""
    bridge = make_bridge(source)
    previous = signal.signal(signal.SIGTERM, lambda *_: bridge.stop())

    def on_poll(src):
        if src.polls == 2:
            src.send(body(1), body(2), body(3))
        elif src.polls == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs before the next bytecode
            src.send(body(4))  # received but never produced: re-delivered after close

    source.on_poll = on_poll
    try:
        bridge.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    producer = bridge.producers[0]
    assert [r["value"] for r in producer.records] == [body(1), body(2), body(3)]
    assert source.actions == [("ack", (1, 1), 3, True)]  # confirmed by the flush, then acked
    assert source.cancelled == 1 and source.closed >= 1
    assert 4 not in source.acked_tags()
    assert bridge.stats.source_state == "stopped"


def test_drain_never_acks_what_the_flush_failed(source):
    bridge = make_bridge(source)
    turn(bridge)
    source.send(body(1), body(2))
    turn(bridge)
    bridge.producers[0].fail_on_flush = True
    bridge.stop()
    bridge.drain()
    assert [a[0] for a in source.actions] == ["nack", "nack"]


def test_record_key_is_source_and_id_or_none():
    assert record_key(json.dumps(REFERENCE, ensure_ascii=False).encode()) == b"web_app:123456"
    assert record_key(b'{"id": 7, "source": "app"}') == b"app:7"
    for unparsable in (b"not json", b"", b"\xff\xfe", b'["web_app", "1"]', b'{"id": "1"}', b"42"):
        assert record_key(unparsable) is None


def test_body_key_and_headers_reach_the_record_unchanged(source):
    bridge = make_bridge(source)
    turn(bridge)
    source.send(body(1), b"not json")
    turn(bridge)
    first, second = bridge.producers[0].records
    assert first["value"] == body(1) and first["key"] == b"web_app:d1"
    assert second["value"] == b"not json" and second["key"] is None
    assert first["headers"] == [("amqp.queue", b"demands")] and first["topic"] == "demand-topic"


def test_amqp_headers_say_where_the_message_came_from():
    method = pika.spec.Basic.Deliver(consumer_tag="ctag", delivery_tag=42, redelivered=True, exchange="ex",
                                     routing_key="rk")
    properties = pika.BasicProperties(message_id="m-1", headers={"trace": "abc", "n": 3, "ok": True, "raw": b"\x00",
                                                                  "nested": {"a": [1, "x"]}, "gone": None})
    headers = dict(message_headers("demands", method, properties))
    assert headers == {
        "amqp.queue": b"demands",
        "amqp.delivery_tag": b"42",
        "amqp.exchange": b"ex",
        "amqp.routing_key": b"rk",
        "amqp.message_id": b"m-1",
        "amqp.redelivered": b"true",
        "amqp.header.trace": b"abc",
        "amqp.header.n": b"3",
        "amqp.header.ok": b"true",
        "amqp.header.raw": b"\x00",
        "amqp.header.nested": b'{"a": [1, "x"]}',
    }
    plain = dict(message_headers("q", pika.spec.Basic.Deliver(delivery_tag=1, exchange="", routing_key="q"),
                                 pika.BasicProperties()))
    assert plain == {"amqp.queue": b"q", "amqp.delivery_tag": b"1", "amqp.exchange": b"", "amqp.routing_key": b"q"}
    assert header_value("页面") == "页面".encode()


def test_tracker_rejects_tags_out_of_order_and_settles_streams_apart():
    tracker = AckTracker()
    tracker.add("a", 1, "q1")
    tracker.add("a", 2, "q2")
    tracker.add("b", 1, "q1")
    with pytest.raises(ValueError):
        tracker.add("a", 2, "q1")
    tracker.resolve("a", 2, True)
    tracker.resolve("b", 1, True)
    assert tracker.settle() == [("ack", "b", 1, ["q1"])]
    tracker.resolve("a", 1, True)
    assert tracker.settle() == [("ack", "a", 2, ["q1", "q2"])]
    assert tracker.pending() == 0
    assert tracker.resolve("gone", 1, True) is False


def test_stats_snapshot_for_monitoring(source):
    bridge = make_bridge(source, topic="stats-topic")
    turn(bridge)
    source.send(body(1), queue="demands")
    turn(bridge)
    [snapshot] = [s for s in bridge_stats() if s["topic"] == "stats-topic"]
    assert snapshot["in_flight"] == 1 and snapshot["source_state"] == "connected"
    assert snapshot["queues"]["demands"]["received"] == 1
    bridge.close()
    assert not [s for s in bridge_stats() if s["topic"] == "stats-topic"]


def test_stats_file_is_a_heartbeat(source, tmp_path):
    path = tmp_path / "bridge.json"
    bridge = make_bridge(source, stats_file=str(path))
    turn(bridge, 2)
    assert json.loads(path.read_text())["source_state"] == "connected"


def test_urls_are_logged_without_password():
    assert redacted("amqp://guest:secret@rabbit:5672/%2F") == "amqp://guest:***@rabbit:5672/%2F"
    assert redacted("amqp://rabbit/%2F") == "amqp://rabbit/%2F"


def test_the_heartbeat_hook_gets_what_each_queue_holds_unacked_and_a_last_beat_on_close():
    source = FakeSource(queues=("demands", "alerts"))
    beats = []
    clock = [0.0]
    bridge = make_bridge(source, heartbeat=lambda snapshot, stopped: beats.append((snapshot, stopped)), clock=lambda: clock[0])
    turn(bridge)  # connects
    source.send(body(1), body(2), queue="demands")
    source.send(body(3), queue="alerts")
    turn(bridge)
    bridge.producers[0].confirm(0)
    clock[0] = 6.0  # the next beat is due after 5 s
    turn(bridge)
    snapshot, stopped = beats[-1]
    assert not stopped
    assert snapshot["held"] == {"demands": 1, "alerts": 1}  # tag 1 acked; 2 and 3 wait for Kafka
    assert snapshot["queues"]["demands"]["forwarded"] == 1
    bridge.close()
    assert beats[-1][1] is True
