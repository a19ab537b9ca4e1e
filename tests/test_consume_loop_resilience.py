"""The consume loop under outages and odd records, with simulated time (the real processes are in
tests/integration/test_faults.py, marked slow)."""

import threading

import pytest
from django.conf import settings
from django.db import OperationalError

from demands.pipeline import loop as loop_module
from demands.models import Demand

from .conftest import REFERENCE, record
from .test_consume_loop import FakeConsumer, FakeMessage, make_loop

pytestmark = pytest.mark.django_db(transaction=True)


def outage(monkeypatch, loop, seconds: float):
    """persist_batch fails like a stopped PostgreSQL until `seconds` of back-off have passed."""
    clock = {"slept": 0.0, "delays": []}

    def sleep(delay):
        clock["slept"] += delay
        clock["delays"].append(delay)

    real = loop_module.persist_batch

    def persist(records):
        if clock["slept"] < seconds:
            raise OperationalError('connection to server at "127.0.0.1", port 5432 failed: Connection refused')
        return real(records)

    loop._sleep = sleep
    monkeypatch.setattr(loop_module, "persist_batch", persist)
    return clock


@pytest.mark.parametrize("seconds", [30, 60])
def test_default_retry_budget_rides_out_a_database_outage_of_a_minute(monkeypatch, seconds):
    loop, holder, _, _ = make_loop([[record(REFERENCE, offset=0)]], max_failures=settings.CONSUMER_MAX_FAILURES)
    clock = outage(monkeypatch, loop, seconds)
    loop.run()
    assert Demand.objects.count() == 1
    assert holder["consumer"].commits == [{("demand-topic", 0): 1}]
    assert max(clock["delays"]) <= 30  # back-off is capped: the loop notices recovery within 30 s


def test_an_outage_longer_than_the_budget_exits_for_the_supervisor_without_committing(monkeypatch):
    loop, holder, _, _ = make_loop([[record(REFERENCE, offset=0)]], max_failures=settings.CONSUMER_MAX_FAILURES)
    outage(monkeypatch, loop, 3600)
    with pytest.raises(loop_module.ConsumerFailed):
        loop.run()
    assert holder["consumer"].commits == []


class FarFutureMessage(FakeMessage):
    def timestamp(self):
        return (1, 10**15)  # year ~33658: old brokers accept any CreateTime


def test_a_record_with_a_kafka_timestamp_past_year_9999_is_stored_without_it(monkeypatch):
    monkeypatch.setattr(FakeConsumer, "message_class", FarFutureMessage)
    loop, holder, _, _ = make_loop([[record(REFERENCE, offset=0)]])
    loop.run()
    demand = Demand.objects.get()
    assert demand.kafka_timestamp is None
    assert holder["consumer"].commits == [{("demand-topic", 0): 1}]


def test_back_off_ends_when_a_stop_is_requested():
    loop = loop_module.ConsumeLoop(topics=["demand-topic"], group="g", create_topics=False)
    sleeper = threading.Thread(target=loop._sleep, args=(3600,))
    sleeper.start()
    loop.stop()  # what the SIGTERM handler does
    sleeper.join(timeout=10)
    assert not sleeper.is_alive()
