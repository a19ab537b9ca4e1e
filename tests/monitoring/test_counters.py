"""/metrics follows Prometheus conventions: counters since the beginning that never go down when
old buckets are pruned, gauges for backlog and lag, and HELP/TYPE lines a parser accepts."""

from datetime import timedelta

import pytest
from django.urls import reverse

from demands.monitoring.counters import flow_counters
from demands.monitoring.flow import add_flow, floor_minute, prune, prune_flow
from demands.monitoring.models import FlowBucket, FlowTotal
from demands.monitoring.prometheus import DatabaseCollector, reason_class

from .conftest import NOW

pytestmark = pytest.mark.django_db
text_parser = pytest.importorskip("prometheus_client.parser")


def scrape(staff_client) -> dict:
    body = staff_client.get(reverse("demands:monitoring:metrics")).content.decode()
    families = {family.name: family for family in text_parser.text_string_to_metric_families(body)}
    return body, families


def sample(families, name, **labels):
    family_name = name.removesuffix("_total")
    for s in families[family_name].samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


def test_counters_add_up_every_bucket_and_survive_pruning_unchanged(settings):
    settings.MONITORING_RETENTION_DAYS = 30
    old, recent = floor_minute(NOW - timedelta(days=40)), floor_minute(NOW)
    add_flow([(old, "arrival", "user_feedback", "web_app", 5), (recent, "arrival", "user_feedback", "web_app", 3),
              (old, "rejection", "", "", 2), (old - timedelta(minutes=1), "arrival", "user_feedback", "web_app", 4)])
    before = flow_counters()
    assert before["arrival"][("user_feedback", "web_app")] == 12 and before["rejection"][("", "")] == 2
    prune(now=NOW)
    assert FlowBucket.objects.filter(minute__lt=NOW - timedelta(days=30)).count() == 0  # the old buckets are gone …
    assert flow_counters() == before  # … and no counter moved
    assert FlowTotal.objects.get(kind="arrival", type="user_feedback", source="web_app").count == 9
    add_flow([(recent, "arrival", "user_feedback", "web_app", 1)])
    prune(now=NOW + timedelta(days=31))  # everything pruned, twice: folded once
    assert flow_counters()["arrival"][("user_feedback", "web_app")] == 13


def test_a_second_prune_of_the_same_buckets_folds_nothing_twice():
    add_flow([(floor_minute(NOW - timedelta(days=40)), "arrival", "t", "s", 7)])
    assert prune_flow(before=NOW) == 1
    assert prune_flow(before=NOW) == 0
    assert flow_counters()["arrival"] == {("t", "s"): 7}


def test_metrics_expose_counters_with_total_suffix_and_no_flow_window_gauges(staff_client, settings):
    settings.MONITORING_RETENTION_DAYS = 30
    from django.utils import timezone

    now = timezone.now()
    add_flow([(floor_minute(now - timedelta(days=40)), "arrival", "user_feedback", "web_app", 5),
              (floor_minute(now), "arrival", "user_feedback", "web_app", 2),
              (floor_minute(now), "resolution", "user_feedback", "web_app", 1)])
    body, families = scrape(staff_client)
    assert families["umsg_demands_received"].type == "counter"
    assert "# TYPE umsg_demands_received_total counter" in body or "# TYPE umsg_demands_received counter" in body
    assert "# HELP umsg_demands_received_total" in body or "# HELP umsg_demands_received " in body
    assert sample(families, "umsg_demands_received_total", type="user_feedback", source="web_app") == 7
    assert sample(families, "umsg_demands_resolved_total", type="user_feedback", source="web_app") == 1
    assert families["umsg_backlog"].type == "gauge" and families["umsg_consumer_lag"].type == "gauge"
    assert "umsg_flow_last_minute" not in body and "umsg_flow_5m" not in body
    prune(now=now)
    _body, after = scrape(staff_client)
    assert sample(after, "umsg_demands_received_total", type="user_feedback", source="web_app") == 7  # monotonic


def test_rejections_are_counted_by_a_bounded_class_of_reason():
    from demands.intake.models import RejectedMessage

    for reason in ("message is not valid JSON: Expecting value: line 1", "missing required field(s): id",
                   "field 'type' must be a string, got number", "field 'timestamp' is not ISO 8601: 'x'", "something new"):
        RejectedMessage.objects.create(topic="demand-topic", reason=reason, payload=b"x")
    families = {f.name: f for f in DatabaseCollector(clock=lambda: NOW).collect()}
    counts = {s.labels["reason"]: s.value for s in families["umsg_messages_rejected"].samples if s.name.endswith("_total")}
    assert counts == {"not_json": 1, "missing_field": 1, "invalid_field": 1, "invalid_timestamp": 1, "other": 1}
    assert reason_class("message is 2000000 bytes; the limit is 1048576") == "too_large"
