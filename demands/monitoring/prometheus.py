"""Prometheus metrics: what this process's consume loops did, and the monitoring data in the database.

- `ConsumeLoopCollector` (registered in the default registry) reports the consume loops running
  in this process: batches and messages by outcome (counters reset when a loop restarts, which
  Prometheus handles), assigned partitions and their lag as the consumer itself sees it. All of
  it comes from each loop's `snapshot()`, which the loop's thread keeps current: a scrape runs in
  another thread and never calls a Kafka consumer. The consumer command serves it with
  prometheus_client's HTTP server (`--metrics-port`).
- `DatabaseCollector` (web `/metrics` only) reads backlog, lag samples, heartbeats, open alerts,
  latency percentiles and the flow counters (counters.py: since the beginning, never going down
  when old buckets are pruned) — one process answers for the whole system.
"""

from __future__ import annotations

import math
from datetime import timedelta

from django.db.models import Count
from django.db.models.functions import Substr
from django.utils import timezone
from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from demands.models import RejectedMessage

from . import heartbeat
from .amqp import amqp_metrics
from .cluster import cluster_overview
from .counters import flow_counters
from .heartbeat import consumer_states
from .lag import lag_overview
from .metrics import latency_quantiles, latest_backlog, window_start
from .models import Alert, AlertDelivery, FlowBucket, LagSample, LatencyBucket, MonitoringCursor


class ConsumeLoopCollector:
    def collect(self):
        loops = list(heartbeat.running_loops)
        running = GaugeMetricFamily("umsg_consumer_loops", "Consume loops running in this process.", labels=["group"])
        batches = CounterMetricFamily("umsg_consumer_batches", "Batches stored and committed.", labels=["group"])
        messages = CounterMetricFamily(
            "umsg_consumer_messages", "Records consumed, by outcome (created, duplicate, rejected).", labels=["group", "outcome"]
        )
        assigned = GaugeMetricFamily("umsg_consumer_assigned_partitions", "Partitions assigned to this process.", labels=["group"])
        partition_lag = GaugeMetricFamily(
            "umsg_consumer_position_lag",
            "High watermark (as last fetched) minus this consumer's position, per assigned partition.",
            labels=["group", "topic", "partition"],
        )
        per_group: dict[str, dict] = {}
        for loop in loops:
            # The loop's snapshot, never its Kafka consumer: a scrape runs in another thread.
            snapshot = loop.snapshot()
            totals = per_group.setdefault(snapshot.group, {"loops": 0, "batches": 0, "created": 0, "duplicates": 0, "rejected": 0, "assigned": 0})
            totals["loops"] += 1
            for key in ("batches", "created", "duplicates", "rejected"):
                totals[key] += snapshot.totals.get(key, 0)
            totals["assigned"] += len(snapshot.partitions)
            for topic, partition, lag in snapshot.lags:  # measured by the loop's thread (at most 1 s old)
                if lag is not None:
                    partition_lag.add_metric([snapshot.group, topic, str(partition)], lag)
        for group, totals in per_group.items():
            running.add_metric([group], totals["loops"])
            batches.add_metric([group], totals["batches"])
            messages.add_metric([group, "created"], totals["created"])
            messages.add_metric([group, "duplicate"], totals["duplicates"])
            messages.add_metric([group, "rejected"], totals["rejected"])
            assigned.add_metric([group], totals["assigned"])
        yield from (running, batches, messages, assigned, partition_lag)


class DatabaseCollector:
    def __init__(self, clock=timezone.now):
        self.clock = clock

    def collect(self):
        now = self.clock()
        backlog = GaugeMetricFamily("umsg_backlog", "Open demands by status and priority.", labels=["status", "priority"])
        for (status, priority), count in sorted(latest_backlog(now=now).items()):
            backlog.add_metric([status, priority], count)
        yield backlog

        yield from flow_counter_metrics()

        for metric, name, minutes in (
            (LatencyBucket.Metric.INGEST, "umsg_ingest_latency_seconds", 5),
            (LatencyBucket.Metric.FIRST_ACTION, "umsg_time_to_first_action_seconds", 60),
        ):
            gauge = GaugeMetricFamily(
                name, f"{LatencyBucket.Metric(metric).label}, quantiles over the last {minutes} minutes.", labels=["quantile"]
            )
            p50, p95, count = latency_quantiles(metric=metric, start=window_start(now, minutes))
            if count:
                gauge.add_metric(["0.5"], p50 / 1000)
                gauge.add_metric(["0.95"], p95 / 1000)
            yield gauge

        lag = GaugeMetricFamily("umsg_consumer_lag", "Committed offset behind the high watermark.", labels=["group", "topic", "partition"])
        lag_total = GaugeMetricFamily("umsg_consumer_lag_total", "Lag summed over partitions.", labels=["group"])
        drain = GaugeMetricFamily(
            "umsg_time_to_drain_seconds", "Estimated seconds until the lag is consumed (+Inf: not shrinking).", labels=["group"]
        )
        groups = LagSample.objects.filter(sampled_at__gte=now - timedelta(minutes=5)).values_list("group", flat=True).distinct()
        for group in sorted(set(groups)):
            overview = lag_overview(group=group, now=now)
            if overview is None:
                continue
            for sample in overview.partitions:
                lag.add_metric([group, sample.topic, str(sample.partition)], sample.lag)
            lag_total.add_metric([group], overview.total)
            if overview.drain.never:
                drain.add_metric([group], math.inf)
            elif overview.drain.seconds is not None:
                drain.add_metric([group], overview.drain.seconds)
        yield from (lag, lag_total, drain)

        consumers = GaugeMetricFamily("umsg_consumers", "Consume loops by state (from heartbeats).", labels=["group", "state"])
        age = GaugeMetricFamily(
            "umsg_consumer_heartbeat_age_seconds", "Seconds since a running consumer's last heartbeat.", labels=["group", "consumer"]
        )
        states: dict[tuple[str, str], int] = {}
        for hb, state in consumer_states(now=now):
            states[(hb.group, state)] = states.get((hb.group, state), 0) + 1
            if hb.stopped_at is None:
                age.add_metric([hb.group, hb.name], (now - hb.last_seen_at).total_seconds())
        for (group, state), count in sorted(states.items()):
            consumers.add_metric([group, state], count)
        yield from (consumers, age)

        alerts = GaugeMetricFamily("umsg_alerts_open", "Open alerts by rule and severity.", labels=["rule", "severity"])
        for row in Alert.objects.filter(resolved_at__isnull=True).values("rule_name", "severity").annotate(n=Count("id")).order_by():
            alerts.add_metric([row["rule_name"], row["severity"]], row["n"])
        yield alerts
        outbox = GaugeMetricFamily("umsg_alert_deliveries", "Webhook/e-mail deliveries by status.", labels=["status"])
        for row in AlertDelivery.objects.exclude(status=AlertDelivery.Status.SENT).values("status").annotate(n=Count("id")).order_by():
            outbox.add_metric([row["status"]], row["n"])
        yield outbox

        yield from cluster_metrics(cluster_overview(now=timezone.now()))
        yield from amqp_metrics(now=now)

        tick = MonitoringCursor.objects.filter(name="tick").first()
        last_tick = GaugeMetricFamily("umsg_monitor_last_tick_timestamp_seconds", "When the monitor last ran (unix time).")
        if tick is not None:
            last_tick.add_metric([], tick.updated_at.timestamp())
        yield last_tick


# Bounded labels for rejection reasons (the stored reason names values: unbounded).
REASON_CLASSES = (
    ("message has no value", "tombstone"),
    ("message is empty", "not_json"),
    ("message is not valid json", "not_json"),
    ("message must be a json object", "not_json"),
    ("message is not valid utf-8", "encoding"),
    ("message value must be", "encoding"),
    ("message is longer", "too_large"),
    ("message is ", "too_large"),  # "message is N bytes; the limit is …"
    ("missing required field", "missing_field"),
    ("field 'timestamp'", "invalid_timestamp"),
    ("field '", "invalid_field"),
)


def reason_class(reason: str) -> str:
    text = reason.lower()
    return next((label for prefix, label in REASON_CLASSES if text.startswith(prefix)), "other")


def flow_counter_metrics() -> list:
    """Counters since the beginning (counters.py): Prometheus computes rates with rate()/increase()."""
    totals = flow_counters()
    families = []
    for kind, name, help_text in (
        (FlowBucket.Kind.ARRIVAL, "umsg_demands_received", "Demands stored, by type and source (re-deliveries not counted)."),
        (FlowBucket.Kind.RESOLUTION, "umsg_demands_resolved", "Demands that entered resolved, rejected or duplicate, by type and source."),
        (FlowBucket.Kind.REJECTION, "umsg_messages_rejected_by_source", "Messages rejected (dead-lettered), by type and source as far as known."),
    ):
        family = CounterMetricFamily(name, help_text, labels=["type", "source"])
        for (type_, source), count in sorted(totals.get(kind, {}).items()):
            family.add_metric([type_, source], count)
        families.append(family)
    by_reason = CounterMetricFamily("umsg_messages_rejected", "Messages rejected (stored as rejected messages), by class of reason.", labels=["reason"])
    counts: dict[str, int] = {}
    rows = RejectedMessage.objects.annotate(head=Substr("reason", 1, 40)).values("head").annotate(n=Count("id")).order_by()
    for row in rows:
        label = reason_class(row["head"] or "")
        counts[label] = counts.get(label, 0) + row["n"]
    for label, count in sorted(counts.items()):
        by_reason.add_metric([label], count)
    families.append(by_reason)
    return families


def cluster_metrics(cluster) -> list:
    """The Kafka cluster as the monitor last saw it (nothing without a fresh sample)."""
    reachable = GaugeMetricFamily("umsg_kafka_cluster_reachable", "1 if the monitor reached the Kafka cluster at its last sample.")
    brokers = GaugeMetricFamily("umsg_kafka_brokers", "Brokers in the cluster's metadata.")
    under = GaugeMetricFamily("umsg_kafka_under_replicated_partitions", "Partitions with fewer in-sync replicas than replicas.")
    offline = GaugeMetricFamily("umsg_kafka_offline_partitions", "Partitions without a leader.")
    controller = GaugeMetricFamily("umsg_kafka_controller", "Node id of the active controller.")
    if cluster is not None:
        reachable.add_metric([], 1 if cluster.reachable else 0)
        if cluster.reachable:
            brokers.add_metric([], len(cluster.brokers))
            under.add_metric([], len(cluster.under_replicated))
            offline.add_metric([], len(cluster.offline))
            if cluster.controller is not None:
                controller.add_metric([], cluster.controller)
    return [reachable, brokers, under, offline, controller]


class WebRegistry:
    """The default registry (process, GC, consume loops in this process) plus the database's view."""

    def __init__(self, database: DatabaseCollector | None = None):
        self.database = database or DatabaseCollector()

    def collect(self):
        yield from REGISTRY.collect()
        yield from self.database.collect()


_loop_collector = ConsumeLoopCollector()
REGISTRY.register(_loop_collector)


def start_consumer_metrics_server(port: int, addr: str = "0.0.0.0"):
    """Serve the default registry (consume loops, process metrics) on port; returns (server, thread)."""
    from prometheus_client import start_http_server

    return start_http_server(port, addr=addr)
