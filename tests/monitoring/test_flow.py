"""Per-minute flow buckets: counted with the batch, once; histograms and percentiles; history roll-ups."""

import json
from datetime import timedelta

import pytest
from django.db.models import Sum
from django.utils import timezone

from demands.pipeline.persist import persist_batch
from demands.models import DemandEvent
from demands.monitoring import flow
from demands.monitoring.flow import (
    INF_MS,
    add_flow,
    bucket_bound,
    floor_minute,
    histogram_quantile,
    prune,
    rollup_history,
    snapshot_backlog,
)
from demands.monitoring.models import BacklogSample, FlowBucket, LagSample, LatencyBucket

from ..conftest import REFERENCE, record
from .conftest import make_demand

pytestmark = pytest.mark.django_db


def counts(kind):
    return {
        (row["type"], row["source"]): row["n"]
        for row in FlowBucket.objects.filter(kind=kind).values("type", "source").annotate(n=Sum("count"))
    }


def test_arrivals_are_counted_per_type_and_source_in_the_minute_they_were_stored():
    result = persist_batch([
        record(REFERENCE, offset=0),
        record({**REFERENCE, "id": "2"}, offset=1),
        record({**REFERENCE, "id": "3", "type": "log_exception", "source": "billing"}, offset=2),
    ])
    assert counts(FlowBucket.Kind.ARRIVAL) == {("user_feedback", "web_app"): 2, ("log_exception", "billing"): 1}
    minutes = set(FlowBucket.objects.values_list("minute", flat=True))
    assert minutes == {floor_minute(result.created[0].received_at)}


def test_a_redelivered_batch_is_not_counted_again():
    batch = [record(REFERENCE, offset=0), record({**REFERENCE, "id": "2"}, offset=1)]
    persist_batch(batch)
    persist_batch(batch)
    assert counts(FlowBucket.Kind.ARRIVAL) == {("user_feedback", "web_app"): 2}


def test_rejections_are_counted_under_the_type_and_source_the_payload_names():
    persist_batch([
        record({**REFERENCE, "timestamp": "yesterday"}, offset=0),  # invalid, but says who sent it
        record(b"\xff not json", offset=1),
        record(json.dumps(["a", "list"]).encode(), offset=2),
    ])
    assert counts(FlowBucket.Kind.REJECTION) == {("user_feedback", "web_app"): 1, ("", ""): 2}
    assert counts(FlowBucket.Kind.ARRIVAL) == {}


def test_a_rejected_message_naming_an_unstorable_type_or_source_is_counted_and_does_not_fail_the_batch():
    # Found by the fuzzing in tests/test_ingest_properties.py: a NUL failed the bucket's INSERT on
    # PostgreSQL, and so the batch, every time it was retried.
    persist_batch([
        record(b'{"type": "a\\u0000b", "source": "\\udc80x", "id": 1}', offset=0),
        record({**REFERENCE, "id": "ok"}, offset=1),
    ])
    assert counts(FlowBucket.Kind.REJECTION) == {("a\ufffdb", "?x"): 1}
    assert counts(FlowBucket.Kind.ARRIVAL) == {("user_feedback", "web_app"): 1}


def test_a_rejected_message_delivered_again_is_not_counted_again():
    batch = [record(b"garbage", offset=7), record({**REFERENCE, "timestamp": "soon"}, offset=8)]
    persist_batch(batch)
    persist_batch(batch)  # the dead-letter copy failed, so the loop retried the batch
    persist_batch([record(b"garbage", offset=9)])
    assert counts(FlowBucket.Kind.REJECTION) == {("", ""): 2, ("user_feedback", "web_app"): 1}


def test_ingest_latency_lands_in_the_histogram_bucket_of_its_duration():
    sent = timezone.now() - timedelta(seconds=3)
    persist_batch([record(REFERENCE, offset=0)])  # no Kafka timestamp: no latency observation
    rec = record({**REFERENCE, "id": "late"}, offset=1)
    rec.timestamp = sent
    persist_batch([rec])
    rows = list(LatencyBucket.objects.filter(metric=LatencyBucket.Metric.INGEST).values_list("le_ms", "count"))
    assert rows == [(5_000, 1)]  # 3 s and a little: above 2.5 s, at most 5 s
    assert 3_000 <= LatencyBucket.objects.get().sum_ms < 5_000


def test_bucket_bound_keeps_a_value_on_a_bound_in_that_bucket_and_clamps_negative_values():
    bounds = (10, 100, INF_MS)
    assert bucket_bound(10, bounds) == 10
    assert bucket_bound(10.5, bounds) == 100
    assert bucket_bound(-5, bounds) == 10  # producer clock ahead of ours
    assert bucket_bound(10**9, bounds) == INF_MS


def test_histogram_quantile_interpolates_linearly_inside_the_bucket():
    buckets = {100: 10, 200: 10}
    assert histogram_quantile(0.5, buckets) == pytest.approx(100)
    assert histogram_quantile(0.95, buckets) == pytest.approx(190)
    assert histogram_quantile(0.25, buckets) == pytest.approx(50)


def test_histogram_quantile_in_the_overflow_bucket_is_the_highest_finite_bound():
    assert histogram_quantile(0.95, {1_000: 1, INF_MS: 9}) == 1_000


def test_histogram_quantile_without_observations_is_unknown():
    assert histogram_quantile(0.5, {}) is None
    assert histogram_quantile(0.5, {100: 0}) is None


def test_histograms_of_several_writers_add_up(now):
    add_flow([(floor_minute(now), "arrival", "t", "s", 2)])
    add_flow([(floor_minute(now), "arrival", "t", "s", 3), (floor_minute(now), "arrival", "t", "other", 1)])
    assert counts("arrival") == {("t", "s"): 5, ("t", "other"): 1}


def test_resolutions_are_rolled_up_from_status_history_exactly_once(now):
    demand = make_demand(received_at=now - timedelta(hours=1))
    DemandEvent.objects.create(demand=demand, kind="status", old_value="new", new_value="triaged", created_at=now - timedelta(minutes=3))
    DemandEvent.objects.create(demand=demand, kind="status", old_value="triaged", new_value="resolved", created_at=now - timedelta(minutes=2))
    other = make_demand(received_at=now - timedelta(hours=1), type="api_anomaly", source="gateway")
    DemandEvent.objects.create(demand=other, kind="status", old_value="new", new_value="duplicate", created_at=now - timedelta(minutes=2))

    first = rollup_history(now=now)
    second = rollup_history(now=now)

    assert first.resolutions == 2 and second.events == 0
    assert counts(FlowBucket.Kind.RESOLUTION) == {("user_feedback", "web_app"): 1, ("api_anomaly", "gateway"): 1}
    assert set(FlowBucket.objects.values_list("minute", flat=True)) == {floor_minute(now - timedelta(minutes=2))}


def test_events_younger_than_the_settle_time_wait_for_a_later_rollup(now, settings):
    settings.MONITORING_ROLLUP_SETTLE_SECONDS = 5
    demand = make_demand(received_at=now - timedelta(hours=1))
    DemandEvent.objects.create(demand=demand, kind="status", new_value="resolved", created_at=now - timedelta(seconds=2))
    assert rollup_history(now=now).events == 0
    assert rollup_history(now=now + timedelta(seconds=10)).resolutions == 1


def test_time_to_first_action_is_counted_once_per_demand_and_rules_at_ingest_are_not_actions(now, django_user_model):
    person = django_user_model.objects.create_user(username="ops", is_staff=True)
    received = now - timedelta(hours=1)
    demand = make_demand(received_at=received, first_action_at=received + timedelta(seconds=100))
    # A rule's change at ingest has no actor: it is not somebody acting on the demand.
    DemandEvent.objects.create(demand=demand, kind="tags", new_value="tagged", created_at=received)
    DemandEvent.objects.create(demand=demand, kind="comment", actor=person, body="looking", created_at=received + timedelta(seconds=100))
    rollup_history(now=now)
    DemandEvent.objects.create(demand=demand, kind="status", actor=person, new_value="resolved", created_at=now - timedelta(minutes=1))
    rollup_history(now=now)

    rows = list(LatencyBucket.objects.filter(metric=LatencyBucket.Metric.FIRST_ACTION).values_list("le_ms", "count", "sum_ms"))
    assert rows == [(120_000, 1, 100_000)]  # 100 s: above 60 s, at most 120 s


def test_backlog_snapshot_counts_open_demands_and_a_later_snapshot_replaces_the_minute(now):
    make_demand(priority="urgent")
    make_demand(priority="urgent", status="triaged")
    second = make_demand(priority="normal")
    make_demand(priority="urgent", status="resolved")  # closed: not backlog

    assert snapshot_backlog(now=now) == {("new", "urgent"): 1, ("triaged", "urgent"): 1, ("new", "normal"): 1}
    second.status = "resolved"
    second.save()
    snapshot_backlog(now=now + timedelta(seconds=20))
    stored = {(s.status, s.priority): s.count for s in BacklogSample.objects.filter(minute=floor_minute(now))}
    assert stored == {("new", "urgent"): 1, ("triaged", "urgent"): 1}


def test_prune_forgets_buckets_past_their_retention_and_keeps_recent_ones(now, settings):
    settings.MONITORING_RETENTION_DAYS = 30
    settings.MONITORING_LAG_RETENTION_DAYS = 7
    add_flow([(floor_minute(now - timedelta(days=31)), "arrival", "t", "s", 1), (floor_minute(now - timedelta(days=29)), "arrival", "t", "s", 1)])
    for days in (8, 6):
        at = now - timedelta(days=days)
        LagSample.objects.create(minute=floor_minute(at), sampled_at=at, group="g", topic="t", partition=0, low=0, high=1, lag=1)
    prune(now=now)
    assert FlowBucket.objects.count() == 1
    assert LagSample.objects.count() == 1


def test_flow_module_writes_rows_sorted_by_key_so_writers_lock_in_one_order(now, django_assert_num_queries):
    rows = [(floor_minute(now), "arrival", name, "s", 1) for name in ("c", "a", "b")]
    with django_assert_num_queries(1):  # one statement for the whole batch
        flow.add_flow(rows)
    assert [b.type for b in FlowBucket.objects.order_by("id")] == ["a", "b", "c"]
