"""Consumer heartbeats: throttled writes, signing off, dead consumers visible, never stopping ingestion."""

from datetime import timedelta

import pytest
from django.db import DatabaseError

from demands.monitoring import heartbeat as heartbeat_module
from demands.monitoring.heartbeat import HeartbeatWriter, consumer_states
from demands.monitoring.models import ConsumerHeartbeat
from demands.pipeline.snapshot import LoopSnapshot

from ..conftest import REFERENCE, record
from ..test_consume_loop import make_loop


class Clock:
    def __init__(self, start):
        self.now = start
        self.mono = 1000.0

    def advance(self, seconds):
        self.now += timedelta(seconds=seconds)
        self.mono += seconds


class FakeLoop:
    def __init__(self, group="g"):
        self.group, self.topics = group, ["demand-topic"]
        self.totals = {"batches": 2, "created": 5, "duplicates": 1, "rejected": 1}

    def snapshot(self):
        return LoopSnapshot(group=self.group, topics=tuple(self.topics), totals=self.totals)


def fake_loop(group="g"):
    return FakeLoop(group)


@pytest.fixture
def clock(now):
    return Clock(now)


def writer(loop, clock, interval=5):
    return HeartbeatWriter(loop, interval=interval, clock=lambda: clock.now, monotonic=lambda: clock.mono)


@pytest.mark.django_db
def test_a_heartbeat_is_written_at_most_once_per_interval(clock):
    beat = writer(fake_loop(), clock)
    beat.beat()
    first_seen = ConsumerHeartbeat.objects.get().last_seen_at
    clock.advance(2)
    beat.beat()
    assert ConsumerHeartbeat.objects.get().last_seen_at == first_seen
    clock.advance(3)
    beat.beat()
    row = ConsumerHeartbeat.objects.get()
    assert row.last_seen_at == first_seen + timedelta(seconds=5)
    assert (row.group, row.batches, row.messages) == ("g", 2, 7)


@pytest.mark.django_db
def test_a_consumer_without_heartbeat_for_the_dead_after_time_shows_as_dead(clock, settings):
    settings.MONITORING_CONSUMER_DEAD_AFTER = 30
    writer(fake_loop(), clock).beat()
    assert [state for _hb, state in consumer_states(now=clock.now + timedelta(seconds=30))] == ["alive"]
    assert [state for _hb, state in consumer_states(now=clock.now + timedelta(seconds=31))] == ["dead"]


@pytest.mark.django_db
def test_a_consumer_that_signs_off_is_stopped_not_dead(clock):
    beat = writer(fake_loop(), clock)
    beat.beat()
    beat.stop()
    assert [state for _hb, state in consumer_states(now=clock.now + timedelta(hours=1))] == ["stopped"]


@pytest.mark.django_db
def test_a_consumer_that_stops_on_an_exception_records_why(clock):
    beat = writer(fake_loop(), clock)
    with pytest.raises(RuntimeError):
        try:
            raise RuntimeError("database gone for good")
        finally:
            beat.stop()
    row = ConsumerHeartbeat.objects.get()
    assert "database gone for good" in row.stop_error
    assert row.state(clock.now, 30) == "failed"


@pytest.mark.django_db
def test_a_heartbeat_that_cannot_be_written_does_not_raise(clock, monkeypatch):
    def broken(*args, **kwargs):
        raise DatabaseError("connection refused")

    monkeypatch.setattr(ConsumerHeartbeat.objects, "update_or_create", broken)
    beat = writer(fake_loop(), clock)
    beat.beat()
    beat.stop()  # neither raises


@pytest.mark.django_db(transaction=True)
def test_the_consume_loop_beats_while_running_and_signs_off_when_it_stops():
    loop, _holder, _producer, _events = make_loop([[record(REFERENCE, offset=0)]])
    loop.run()
    row = ConsumerHeartbeat.objects.get()
    assert row.group == "g" and row.topics == "demand-topic"
    assert row.stopped_at is not None and row.stop_error == ""
    assert row.batches == 1 and row.messages == 1
    assert loop not in heartbeat_module.running_loops
