"""The verdict (healthy / degraded / down, with the reasons) and dead consumers that resolve
themselves once live consumers own their partitions again."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import translation

from demands.monitoring.cluster import record_cluster
from demands.monitoring.flow import add_flow, floor_minute, prune
from demands.monitoring.heartbeat import consumer_states
from demands.monitoring.lag import PartitionLag, record_lag
from demands.monitoring.models import Alert, AlertRule, ConsumerHeartbeat, MonitoringCursor
from demands.monitoring.verdict import DEGRADED, DOWN, HEALTHY, compute_verdict

from .conftest import NOW, make_rule

pytestmark = pytest.mark.django_db
GROUP = "unified-msg"


def consumer(name, *, partitions, seen=NOW, started=None, group=GROUP, stopped=False):
    return ConsumerHeartbeat.objects.create(
        name=name, hostname="h", pid=1, group=group, topics="demand-topic", started_at=started or seen - timedelta(hours=1),
        last_seen_at=seen, stopped_at=seen if stopped else None, assignment=[f"demand-topic[{p}]" for p in partitions],
    )


def healthy_system(now=NOW):
    MonitoringCursor.objects.create(name="tick", updated_at=now)
    consumer("live", partitions=[0, 1, 2])
    record_cluster(now=now, metadata={"brokers": [[1, "b:9092"]], "controller": 1, "topics": {"demand-topic": [[0, 1, [1], [1]]]}})
    record_lag(now=now - timedelta(minutes=2), group=GROUP, partitions=[PartitionLag("demand-topic", 0, 100, 0, 100)])
    record_lag(now=now, group=GROUP, partitions=[PartitionLag("demand-topic", 0, 160, 0, 160)])


def codes(verdict):
    return [reason.code for reason in verdict.reasons]


def test_a_live_consumer_keeping_up_with_a_healthy_cluster_is_healthy(settings):
    settings.KAFKA_CONSUMER_GROUP = GROUP
    healthy_system()
    verdict = compute_verdict(now=NOW)
    assert (verdict.state, verdict.reasons, verdict.health) == (HEALTHY, [], "ok")


def test_no_live_consumer_or_an_unreachable_cluster_is_down_with_links_to_their_cards(settings):
    settings.KAFKA_CONSUMER_GROUP = GROUP
    healthy_system()
    ConsumerHeartbeat.objects.update(last_seen_at=NOW - timedelta(minutes=5))
    record_cluster(now=NOW, metadata=None, error="connection refused")
    verdict = compute_verdict(now=NOW)
    assert verdict.state == DOWN and verdict.health == "critical"
    assert {"no_consumer", "cluster_unreachable"} <= set(codes(verdict))
    hrefs = {reason.code: reason.href for reason in verdict.reasons}
    assert hrefs["cluster_unreachable"].endswith("#cluster-card") and hrefs["no_consumer"].endswith("#consumers-card")


def test_a_stalled_lag_is_down_and_a_growing_one_degraded(settings):
    settings.KAFKA_CONSUMER_GROUP = GROUP
    healthy_system()
    record_lag(now=NOW - timedelta(minutes=2), group=GROUP, partitions=[PartitionLag("demand-topic", 0, 100, 0, 200)])
    record_lag(now=NOW, group=GROUP, partitions=[PartitionLag("demand-topic", 0, 100, 0, 260)])
    assert codes(compute_verdict(now=NOW)) == ["lag_stalled"] and compute_verdict(now=NOW).state == DOWN
    record_lag(now=NOW, group=GROUP, partitions=[PartitionLag("demand-topic", 0, 110, 0, 5000)])
    verdict = compute_verdict(now=NOW)
    assert (verdict.state, codes(verdict)) == (DEGRADED, ["lag_growing"])


def test_a_high_reject_ratio_and_a_stale_monitor_degrade_it(settings):
    settings.KAFKA_CONSUMER_GROUP = GROUP
    healthy_system()
    add_flow([(floor_minute(NOW), "arrival", "t", "s", 10), (floor_minute(NOW), "rejection", "t", "s", 30)])
    MonitoringCursor.objects.filter(name="tick").update(updated_at=NOW - timedelta(minutes=10))
    verdict = compute_verdict(now=NOW)
    assert verdict.state == DEGRADED and codes(verdict) == ["monitor_stale", "rejections"]
    assert verdict.reasons[1].href == reverse("demands:rejected")


def test_open_alerts_are_reasons_a_critical_pipeline_one_makes_it_down(settings):
    settings.KAFKA_CONSUMER_GROUP = GROUP
    healthy_system()
    rule = make_rule(AlertRule.Kind.URGENT_UNASSIGNED, severity="critical")
    alert = Alert.objects.create(rule=rule, rule_name=rule.name, kind=rule.kind, key="demand:1", severity="critical",
                                 title="Urgent demand #1 unassigned", opened_at=NOW, last_seen_at=NOW)
    verdict = compute_verdict(now=NOW)
    assert verdict.state == DEGRADED and verdict.reasons[0].href == reverse("demands:monitoring:alert", args=[alert.pk])
    Alert.objects.filter(pk=alert.pk).update(kind=AlertRule.Kind.HEARTBEAT_MISSING)
    assert compute_verdict(now=NOW).state == DOWN


def test_reasons_are_translated_when_rendered_not_when_computed(settings):
    settings.KAFKA_CONSUMER_GROUP = GROUP
    verdict = compute_verdict(now=NOW)  # nothing at all: no consumer, no monitor
    with translation.override("zh-hans"):
        assert verdict.label == "故障" and any("没有存活的消费者" in reason.text for reason in verdict.reasons)
    with translation.override("en"):
        assert verdict.label == "Down" and any(reason.text == f"No live consumer in group {GROUP}" for reason in verdict.reasons)


# -- dead consumers resolve themselves ---------------------------------------------------------------
def test_a_dead_consumer_whose_partitions_a_live_one_owns_is_replaced_not_dead(settings):
    settings.KAFKA_CONSUMER_GROUP = GROUP
    consumer("live", partitions=[0, 1, 2, 3])
    for i in range(6):  # the pile-up seen: "6 consumers dead" next to a live one with lag 0
        consumer(f"old-{i}", partitions=[i % 4], seen=NOW - timedelta(minutes=10 + i))
    states = {hb.name: state for hb, state in consumer_states(now=NOW)}
    assert states == {"live": "alive", **{f"old-{i}": "replaced" for i in range(6)}}
    healthy_system_extra = compute_verdict(now=NOW)
    assert "consumers_dead" not in codes(healthy_system_extra)


def test_a_dead_consumer_whose_partitions_nobody_took_over_stays_dead():
    consumer("live", partitions=[0, 1])
    consumer("gone", partitions=[2], seen=NOW - timedelta(minutes=10))
    consumer("other-group", partitions=[0], seen=NOW - timedelta(minutes=10), group="elsewhere")
    states = {hb.name: state for hb, state in consumer_states(now=NOW)}
    assert states == {"live": "alive", "gone": "dead", "other-group": "dead"}


def test_the_heartbeat_rule_does_not_fire_for_replaced_consumers(settings):
    from demands.monitoring.alerts import evaluate_rules

    settings.KAFKA_CONSUMER_GROUP = GROUP
    consumer("live", partitions=[0, 1])
    consumer("crashed", partitions=[1], seen=NOW - timedelta(minutes=10), started=NOW - timedelta(hours=3))
    make_rule(AlertRule.Kind.HEARTBEAT_MISSING, threshold=60)
    evaluate_rules(now=NOW)
    assert list(Alert.objects.values_list("key", flat=True)) == []


def test_replaced_heartbeats_expire_after_their_retention_dead_ones_after_the_longer_one(settings):
    settings.MONITORING_REPLACED_RETENTION_HOURS = 1
    settings.MONITORING_HEARTBEAT_RETENTION_HOURS = 24
    consumer("live", partitions=[0, 1])
    consumer("replaced-recent", partitions=[0], seen=NOW - timedelta(minutes=30))
    consumer("replaced-old", partitions=[1], seen=NOW - timedelta(hours=2))
    consumer("dead-old", partitions=[7], seen=NOW - timedelta(hours=2))
    consumer("ancient", partitions=[8], seen=NOW - timedelta(hours=25))
    prune(now=NOW)
    assert set(ConsumerHeartbeat.objects.values_list("name", flat=True)) == {"live", "replaced-recent", "dead-old"}


# -- the stat cards' sub-lines are readable (WCAG AA, 4.5:1) -----------------------------------------
def _luminance(hex_color):
    channels = [int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    channels = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * channels[0] + 0.7152 * channels[1] + 0.0722 * channels[2]


def _contrast(a, b):
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.parametrize("theme", [0, 1], ids=["light", "dark"])
def test_stat_sub_lines_have_at_least_4_5_to_1_contrast_on_their_card(theme):
    import re
    from pathlib import Path

    static = Path(__file__).resolve().parents[2] / "static" / "css"
    token = re.search(r"\.stat \.sub \{[^}]*color: var\((--[\w-]+)\)", (static / "monitoring.css").read_text()).group(1)
    app = (static / "app.css").read_text()
    colour = re.findall(rf"{token}: (#[0-9a-fA-F]{{6}})", app)[theme]
    surface = re.findall(r"--surface: (#[0-9a-fA-F]{6})", app)[theme]
    assert _contrast(colour, surface) >= 4.5
