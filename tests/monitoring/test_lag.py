"""Lag arithmetic, samples over time, and the time-to-drain estimate."""

from datetime import timedelta

import pytest

from demands.monitoring.lag import LagReader, PartitionLag, estimate_drain, lag_overview, record_lag
from demands.monitoring.models import LagSample

pytestmark = pytest.mark.django_db


def test_lag_is_the_high_watermark_minus_the_committed_offset():
    assert PartitionLag("t", 0, committed=40, low=0, high=100).lag == 60


def test_without_a_commit_everything_retained_is_lag():
    assert PartitionLag("t", 0, committed=None, low=30, high=100).lag == 70


def test_a_commit_older_than_retention_counts_from_the_earliest_offset():
    assert PartitionLag("t", 0, committed=10, low=30, high=100).lag == 70


def test_lag_is_never_negative():
    assert PartitionLag("t", 0, committed=120, low=0, high=100).lag == 0


def test_drain_time_is_lag_over_the_net_consume_rate():
    drain = estimate_drain(lag=600, consumed=300, produced=60, seconds=120)
    assert drain.state == "draining"
    assert drain.consume_rate == pytest.approx(2.5) and drain.produce_rate == pytest.approx(0.5)
    assert drain.seconds == pytest.approx(300)


def test_a_lag_that_producers_outpace_never_drains():
    drain = estimate_drain(lag=600, consumed=100, produced=200, seconds=60)
    assert drain.state == "growing" and drain.seconds is None and drain.never


def test_a_small_lag_with_consumers_as_fast_as_producers_is_keeping_up():
    drain = estimate_drain(lag=20, consumed=120, produced=120, seconds=60)  # 20 messages = 10 s of reading
    assert drain.state == "keeping_up" and not drain.never
    assert drain.seconds == pytest.approx(10)


def test_a_lag_nobody_consumes_is_stalled():
    drain = estimate_drain(lag=5, consumed=0, produced=0, seconds=60)
    assert drain.state == "stalled" and drain.never


def test_no_lag_is_drained_whatever_the_rates():
    assert estimate_drain(lag=0, consumed=0, produced=0, seconds=60).state == "drained"
    assert estimate_drain(lag=0, consumed=0, produced=0, seconds=0).seconds == 0


def test_without_a_time_span_the_drain_is_unknown():
    assert estimate_drain(lag=5, consumed=0, produced=0, seconds=0).state == "unknown"


def test_overview_estimates_drain_from_samples_a_few_minutes_apart(now):
    before = now - timedelta(minutes=2)
    record_lag(now=before, group="g", partitions=[PartitionLag("t", 0, 100, 0, 1000), PartitionLag("t", 1, 0, 0, 0)])
    record_lag(now=now, group="g", partitions=[PartitionLag("t", 0, 400, 0, 1060), PartitionLag("t", 1, 0, 0, 0)])

    overview = lag_overview(group="g", now=now)

    assert overview.total == 660
    assert overview.by_topic() == {"t": 660}
    assert overview.drain.state == "draining"
    assert overview.drain.seconds == pytest.approx(660 / ((300 - 60) / 120))


def test_a_later_sample_in_the_same_minute_replaces_the_earlier_one(now):
    record_lag(now=now, group="g", partitions=[PartitionLag("t", 0, 1, 0, 10)])
    record_lag(now=now + timedelta(seconds=10), group="g", partitions=[PartitionLag("t", 0, 5, 0, 10)])
    assert list(LagSample.objects.values_list("lag", flat=True)) == [5]


def test_a_stale_sample_is_no_overview(now, settings):
    settings.MONITORING_LAG_STALE_SECONDS = 120
    record_lag(now=now - timedelta(minutes=5), group="g", partitions=[PartitionLag("t", 0, 1, 0, 10)])
    assert lag_overview(group="g", now=now) is None
    assert lag_overview(group="other", now=now) is None


class FakeProbe:
    """The probe child's answer shapes, for the reader's bookkeeping without a broker (the broker test is in test_broker.py)."""

    def ask(self, *, groups, timeout):
        rows = {"t": [["t", 0, 7, 0, 10], ["t", 1, None, 1, 4]]}
        return {"ok": True, "cluster": {"brokers": [[1, "127.0.0.1:9092"]], "controller": 1, "topics": {}},
                "lag": {group: [row for topic in topics for row in rows.get(topic, [])] for group, topics in groups.items()}}


def test_reader_pairs_committed_offsets_with_watermarks_and_skips_unknown_topics():
    partitions = LagReader(FakeProbe()).read(group="g", topics=["t", "missing"])
    assert [(p.partition, p.committed, p.low, p.high, p.lag) for p in partitions] == [(0, 7, 0, 10, 3), (1, None, 1, 4, 3)]
