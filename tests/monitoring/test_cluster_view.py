"""The cluster's state as the monitor stored it: on the monitoring page, in /metrics, and as an alert."""

import pytest
from django.utils import timezone

from demands.monitoring.alerts import evaluate_rules
from demands.monitoring.cluster import record_cluster
from demands.monitoring.models import Alert, AlertRule

pytestmark = pytest.mark.django_db

DEGRADED = {"brokers": [[1, "127.0.0.1:9092"], [3, "127.0.0.1:9096"]], "controller": 3, "topics": {
    "demand-topic": [[0, 1, [1, 2, 3], [1, 3]], [1, 3, [2, 3, 1], [3, 1]], [2, 3, [3, 1, 2], [3, 1, 2]]],
}}


def test_a_degraded_cluster_shows_its_brokers_and_under_replicated_partitions_on_the_page(staff_client):
    record_cluster(now=timezone.now(), metadata=DEGRADED)
    page = staff_client.get("/monitoring/").content.decode()
    assert "Kafka cluster" in page and "degraded" in page
    assert "demand-topic[0], demand-topic[1]" in page
    assert "127.0.0.1:9096" in page


def test_an_unreachable_cluster_says_why(staff_client):
    record_cluster(now=timezone.now(), metadata=None, error="probe child died: signal 11")
    page = staff_client.get("/monitoring/").content.decode()
    assert "unreachable" in page and "probe child died: signal 11" in page


def test_metrics_expose_brokers_and_under_replicated_and_offline_partitions(staff_client):
    record_cluster(now=timezone.now(), metadata=DEGRADED)
    text = staff_client.get("/metrics").content.decode()
    assert "umsg_kafka_cluster_reachable 1.0" in text
    assert "umsg_kafka_brokers 2.0" in text
    assert "umsg_kafka_under_replicated_partitions 2.0" in text
    assert "umsg_kafka_offline_partitions 0.0" in text
    assert "umsg_kafka_controller 3.0" in text


def test_the_cluster_degraded_rule_opens_an_alert_while_partitions_are_under_replicated_and_resolves_after():
    AlertRule.objects.create(name="Cluster", kind=AlertRule.Kind.CLUSTER_DEGRADED, threshold=0)
    now = timezone.now()
    record_cluster(now=now, metadata=DEGRADED)
    evaluate_rules(now=now)
    alert = Alert.objects.get(resolved_at__isnull=True)
    assert "2 Kafka partitions under-replicated" in alert.title
    later = now + timezone.timedelta(minutes=1)
    healthy = {**DEGRADED, "topics": {"demand-topic": [[0, 1, [1], [1]]]}}
    record_cluster(now=later, metadata=healthy)
    evaluate_rules(now=later)
    assert not Alert.objects.filter(resolved_at__isnull=True).exists()
