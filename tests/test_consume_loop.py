"""The consume loop's contract with a fake consumer: commit only after the database, retry, stop."""

import threading

import pytest
from confluent_kafka import KafkaError, KafkaException
from django.db import DatabaseError

from demands.pipeline import loop as loop_module, parse, persist
from demands.pipeline.loop import ConsumeLoop, ConsumerFailed
from demands.models import Demand, RejectedMessage

from .conftest import REFERENCE, record

pytestmark = pytest.mark.django_db(transaction=True)


class FakeMessage:
    def __init__(self, rec):
        self.rec = rec

    def error(self):
        return None

    def topic(self):
        return self.rec.topic

    def partition(self):
        return self.rec.partition

    def offset(self):
        return self.rec.offset

    def value(self):
        return self.rec.value

    def key(self):
        return self.rec.key

    def timestamp(self):
        return (1, 1743849000000)

    def headers(self):
        return self.rec.headers


class FakeConsumer:
    """Hands out the given batches once, then stops the loop; records what was committed."""

    message_class = FakeMessage
    arrive_together = False

    def __init__(self, batches, loop_ref, events):
        self.batches = list(batches)
        self.current = []
        self.calls = []
        self.between_batches = False
        self.loop_ref = loop_ref
        self.events = events
        self.commits = []
        self.modes = []
        self.closed = False
        self.config = {}
        self.confirm_async = True

    def subscribe(self, topics, **callbacks):
        self.events.append(("subscribe", tuple(topics)))
        self.callbacks = callbacks

    def consume(self, num_messages, timeout):
        """Each given batch is what arrives at one moment: the loop's waiting read takes its first
        record and then the rest; a read that does not wait (timeout 0, the loop's read-ahead)
        finds the next batch only when `arrive_together` says the batches came at once."""
        self.calls.append((num_messages, timeout))
        if self.current:
            taken, self.current = self.current[:num_messages], self.current[num_messages:]
            self.between_batches = not self.current
            return taken
        if self.between_batches:
            self.between_batches = False
            if not (timeout == 0 and self.arrive_together):
                return []
        if timeout == 0 and not (self.arrive_together and self.batches):
            return []
        if not self.batches:
            self.loop_ref[0].stop()
            return []
        self.current = [self.message_class(rec) for rec in self.batches.pop(0)]
        self.events.append(("read", len(self.current)))
        taken, self.current = self.current[:num_messages], self.current[num_messages:]
        self.between_batches = not self.current
        return taken

    def commit(self, offsets, asynchronous):
        self.events.append(("commit", Demand.objects.count()))
        self.commits.append({(tp.topic, tp.partition): tp.offset for tp in offsets})
        self.modes.append("async" if asynchronous else "sync")
        if asynchronous and self.confirm_async:
            self.config["on_commit"](None, offsets)  # librdkafka reports it on a later poll

    def close(self):
        self.closed = True


class FakeProducer:
    def __init__(self, fail=False):
        self.produced = []
        self.fail = fail

    def produce(self, topic, value, key=None, headers=None, on_delivery=None):
        self.produced.append((topic, value, dict(headers or [])))

    def flush(self, timeout=None):
        return 1 if self.fail else 0


def make_loop(batches, *, producer=None, confirm_async=True, **kwargs):
    loop_ref, events = [None], []
    kwargs_confirm = confirm_async
    holder = {}

    def consumer_factory(config):
        holder["config"] = config
        holder["consumer"] = FakeConsumer(batches, loop_ref, events)
        holder["consumer"].config = config
        holder["consumer"].confirm_async = kwargs_confirm
        return holder["consumer"]

    producer = producer or FakeProducer()
    loop = ConsumeLoop(
        topics=["demand-topic"], group="g", dlq_topic="demand-topic.dlq", broadcast=False, create_topics=False,
        consumer_factory=consumer_factory, producer_factory=lambda: producer, **kwargs,
    )
    loop._sleep = lambda seconds: None  # no real back-off in unit tests
    loop_ref[0] = loop
    return loop, holder, producer, events


def test_offsets_are_committed_after_the_batch_is_stored_and_point_past_it():
    batch = [record(REFERENCE, offset=10, partition=0), record({**REFERENCE, "id": "2"}, offset=11, partition=0),
             record({**REFERENCE, "id": "3"}, offset=4, partition=1)]
    loop, holder, _, events = make_loop([batch])
    loop.run()
    assert holder["consumer"].commits == [{("demand-topic", 0): 12, ("demand-topic", 1): 5}]
    assert ("commit", 3) in events  # three demands were in the database when the commit happened
    assert holder["consumer"].closed


def test_consumer_disables_auto_commit_and_auto_offset_store():
    loop, holder, _, _ = make_loop([])
    loop.run()
    assert holder["config"]["enable.auto.commit"] is False
    assert holder["config"]["enable.auto.offset.store"] is False


def test_invalid_records_are_dead_lettered_with_reason_before_commit():
    loop, holder, producer, _ = make_loop([[record(b"garbage", offset=3), record(REFERENCE, offset=4)]])
    loop.run()
    assert len(producer.produced) == 1
    topic, value, headers = producer.produced[0]
    assert topic == "demand-topic.dlq" and value == b"garbage"
    assert b"not valid JSON" in headers["dlq.reason"]
    assert RejectedMessage.objects.count() == 1
    assert holder["consumer"].commits == [{("demand-topic", 0): 5}]


def test_failed_dead_letter_delivery_commits_nothing(monkeypatch):
    loop, holder, _, _ = make_loop([[record(b"garbage", offset=3)]], producer=FakeProducer(fail=True), max_failures=2)
    with pytest.raises(ConsumerFailed):
        loop.run()
    assert holder["consumer"].commits == []
    assert holder["consumer"].closed


def test_database_errors_are_retried_without_committing_then_succeed(monkeypatch):
    calls = {"n": 0}
    real = persist.persist_batch

    def flaky(records):
        calls["n"] += 1
        if calls["n"] < 3:
            raise DatabaseError("server closed the connection unexpectedly")
        return real(records)

    monkeypatch.setattr(loop_module, "persist_batch", flaky)
    loop, holder, _, events = make_loop([[record(REFERENCE, offset=0)]])
    loop.run()
    assert calls["n"] == 3
    assert [event for event in events if event[0] == "commit"] == [("commit", 1)]


def test_too_many_consecutive_failures_raise_so_the_process_exits_non_zero(monkeypatch):
    def broken(records):
        raise DatabaseError("down")

    monkeypatch.setattr(loop_module, "persist_batch", broken)
    loop, holder, _, _ = make_loop([[record(REFERENCE, offset=0)]], max_failures=4)
    with pytest.raises(ConsumerFailed, match="failed 4 times"):
        loop.run()
    assert holder["consumer"].commits == []
    assert holder["consumer"].closed


def test_stop_during_retries_exits_without_committing(monkeypatch):
    loop_box = {}

    def broken(records):
        loop_box["loop"].stop()
        raise DatabaseError("down")

    monkeypatch.setattr(loop_module, "persist_batch", broken)
    loop, holder, _, _ = make_loop([[record(REFERENCE, offset=0)]])
    loop_box["loop"] = loop
    loop.run()
    assert holder["consumer"].commits == []
    assert holder["consumer"].closed


def test_commit_refused_after_rebalance_is_not_fatal(monkeypatch):
    loop, holder, _, _ = make_loop([[record(REFERENCE, offset=0)], [record({**REFERENCE, "id": "9"}, offset=1)]])
    original = FakeConsumer.commit
    state = {"first": True}

    def commit(self, offsets, asynchronous):
        if state["first"]:
            state["first"] = False
            raise KafkaException(KafkaError(KafkaError.REBALANCE_IN_PROGRESS))
        original(self, offsets, asynchronous)

    monkeypatch.setattr(FakeConsumer, "commit", commit)
    loop.run()
    assert Demand.objects.count() == 2
    assert holder["consumer"].commits == [{("demand-topic", 0): 2}]


def test_stop_from_another_thread_ends_the_loop():
    loop, holder, _, _ = make_loop([[record(REFERENCE, offset=0)]] * 1)
    thread = threading.Thread(target=loop.run)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert holder["consumer"].closed


def test_offsets_go_asynchronously_and_unconfirmed_ones_are_committed_synchronously_on_close():
    loop, holder, _, _ = make_loop([[record(REFERENCE, offset=7)]], confirm_async=False)
    loop.run()
    consumer = holder["consumer"]
    assert consumer.modes == ["async", "sync"]  # the batch, then the final commit before leaving
    assert consumer.commits == [{("demand-topic", 0): 8}, {("demand-topic", 0): 8}]


def test_confirmed_async_commits_need_no_final_commit():
    loop, holder, _, _ = make_loop([[record(REFERENCE, offset=7)]])
    loop.run()
    assert holder["consumer"].modes == ["async"]


def test_synchronous_commits_can_be_chosen(settings):
    settings.CONSUMER_ASYNC_COMMIT = False
    loop, holder, _, _ = make_loop([[record(REFERENCE, offset=7)]])
    loop.run()
    assert holder["consumer"].modes == ["sync"]


def test_batches_that_arrived_together_are_read_ahead_and_stored_in_order_each_committed_after_it(monkeypatch):
    monkeypatch.setattr(FakeConsumer, "arrive_together", True)
    first = [record({**REFERENCE, "id": str(n)}, offset=n) for n in range(3)]
    second = [record({**REFERENCE, "id": str(n)}, offset=n) for n in range(3, 5)]
    loop, holder, _, events = make_loop([first, second])
    loop.run()
    # The second batch was read (and handed to the parser) before the first was stored…
    assert [e for e in events if e[0] in ("read", "commit")] == [("read", 3), ("read", 2), ("commit", 3), ("commit", 5)]
    # …and each batch's offsets were committed only after it was stored.
    assert holder["consumer"].commits == [{("demand-topic", 0): 3}, {("demand-topic", 0): 5}]
    assert loop.totals["batches"] == 2 and Demand.objects.count() == 5


def test_a_batch_read_ahead_when_a_stop_comes_is_left_uncommitted(monkeypatch):
    monkeypatch.setattr(FakeConsumer, "arrive_together", True)
    loop, holder, _, _ = make_loop([[record(REFERENCE, offset=0)], [record({**REFERENCE, "id": "2"}, offset=1)]], batch_size=1)
    loop.on_batch = lambda result: loop.stop()  # SIGTERM during the first batch
    loop.run()
    assert holder["consumer"].commits == [{("demand-topic", 0): 1}]
    assert list(Demand.objects.values_list("message_id", flat=True)) == ["123456"]
    assert holder["consumer"].closed


def test_a_parser_crash_is_retried_like_any_other_failure(monkeypatch):
    calls = {"n": 0}
    real = parse.parse_batch

    def crashing(records):
        calls["n"] += 1
        if calls["n"] == 1:
            raise MemoryError("the worker could not parse this time")
        return real(records)

    monkeypatch.setattr(loop_module, "parse_batch", crashing)
    loop, holder, _, _ = make_loop([[record(REFERENCE, offset=0)]])
    loop.run()
    assert calls["n"] == 2 and Demand.objects.count() == 1
    assert holder["consumer"].commits == [{("demand-topic", 0): 1}]


def test_a_batch_starts_with_the_first_record_and_takes_what_has_arrived_without_waiting(settings):
    assert settings.CONSUMER_BATCH_TIMEOUT == 0  # the default: a lone record is stored at once
    loop, holder, _, _ = make_loop([[record(REFERENCE, offset=0), record({**REFERENCE, "id": "2"}, offset=1)]])
    loop.run()
    calls = holder["consumer"].calls
    assert calls[:3] == [(1, loop.idle_timeout), (499, 0), (500, 0)]  # first record, the rest, read-ahead
    assert Demand.objects.count() == 2 and loop.totals["batches"] == 1


def test_a_retried_batch_is_stored_with_its_rule_changes_once(monkeypatch):
    from demands.models import DemandEvent, Rule
    from demands.pipeline.rules import RuleBook

    Rule.objects.create(name="Urgent", set_priority="urgent")
    RuleBook.invalidate_all()
    calls = {"n": 0}
    real = persist.persist_batch

    def fails_after_storing_once(batch):
        calls["n"] += 1
        result = real(batch)  # rules were applied in the parser thread; storing them must not undo that
        if calls["n"] == 1:
            raise DatabaseError("connection lost before the commit")
        return result

    monkeypatch.setattr(loop_module, "persist_batch", fails_after_storing_once)
    loop, holder, _, _ = make_loop([[record(REFERENCE, offset=0)]])
    loop.run()
    demand = Demand.objects.get()
    assert calls["n"] == 2 and demand.priority == "urgent"
    assert demand.rule_changes == [{"rule_id": demand.rule_changes[0]["rule_id"], "rule": "Urgent", "field": "priority",
                                    "old": "normal", "new": "urgent"}]
    assert not DemandEvent.objects.exists()
    assert holder["consumer"].commits == [{("demand-topic", 0): 1}]


def test_a_revoked_partition_gets_its_stored_offsets_committed_at_once_and_rebalances_are_logged(caplog):
    """On a rebalance the next owner starts from the last committed offset: what this consumer
    stored is committed synchronously before the partitions go (an asynchronous commit still in
    flight would fail with the old generation, and the next owner would read those records again)."""
    from confluent_kafka import TopicPartition

    loop, holder, _, _ = make_loop([[record(REFERENCE, offset=10, partition=0)]], confirm_async=False)
    caplog.set_level("INFO", logger="demands.pipeline.loop")
    loop.run()
    consumer = holder["consumer"]
    consumer.callbacks["on_assign"](consumer, [TopicPartition("demand-topic", 0), TopicPartition("demand-topic", 1)])
    assert loop.partitions.owned == {("demand-topic", 0), ("demand-topic", 1)}
    assert consumer.modes == ["async", "sync"]  # the batch's commit, then the one on close
    loop.offsets.uncommitted = {("demand-topic", 0): 11}  # as if a batch had just been stored, its commit in flight
    consumer.callbacks["on_revoke"](consumer, [TopicPartition("demand-topic", 0)])
    assert consumer.commits[-1] == {("demand-topic", 0): 11} and consumer.modes[-1] == "sync"
    assert loop.partitions.owned == {("demand-topic", 1)}
    consumer.callbacks["on_lost"](consumer, [TopicPartition("demand-topic", 1)])
    assert loop.partitions.owned == set()
    messages = [r.getMessage() for r in caplog.records]
    assert "partitions assigned: demand-topic[0,1]; consuming demand-topic[0,1]" in messages
    assert "partitions revoked: demand-topic[0]; consuming demand-topic[1]" in messages
    assert any(m.startswith("partitions lost") and m.endswith("consuming nothing") for m in messages)
