"""Broker probing happens in a child process, without coordinator-targeted admin requests.

librdkafka crashed whole processes on ListConsumerGroupOffsets (NOT_COORDINATOR, librdkafka #5040)
and on broker restarts mid-request (#4605): the monitor and /readyz ran it in the dashboard's own
process. These tests pin both walls: no such request anywhere in the product, and a native crash
in probing is one failed sample, after which probing works again.
"""

import ast
from pathlib import Path

import pytest
from django.utils import timezone

from demands.monitoring.cluster import cluster_overview, summarise
from demands.monitoring.lag import LagReader
from demands.monitoring.models import ClusterSample
from demands.monitoring.monitor import Monitor
from demands.monitoring.probe import ProbeClient, ProbeFailed

COORDINATOR_CALLS = {
    "list_consumer_group_offsets", "alter_consumer_group_offsets", "delete_consumer_group_offsets",
    "describe_consumer_groups", "list_consumer_groups", "delete_consumer_groups",
}
PRODUCT = Path(__file__).resolve().parents[2] / "demands"


def test_no_product_module_makes_a_coordinator_targeted_admin_request():
    calls = {
        f"{path.relative_to(PRODUCT.parent)}:{node.lineno}"
        for path in PRODUCT.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute) and node.attr in COORDINATOR_CALLS
    }
    assert calls == set()


def test_cluster_summary_names_under_replicated_and_offline_partitions():
    metadata = {"brokers": [[1, "a:9092"], [2, "b:9094"]], "controller": 1, "topics": {
        "t": [[0, 1, [1, 2, 3], [1, 2, 3]], [1, 2, [2, 3, 1], [2, 1]], [2, -1, [3, 1, 2], []]],
    }}
    summary = summarise(metadata)
    assert summary["under_replicated"] == ["t[1]"]
    assert summary["offline"] == ["t[2]"]
    assert (summary["partitions"], summary["max_replicas"], summary["controller"]) == (3, 3, 1)


def test_an_unreachable_broker_is_a_failed_probe_with_its_reason_not_a_hang():
    probe = ProbeClient({"bootstrap.servers": "127.0.0.1:1", "socket.connection.setup.timeout.ms": 1000})
    try:
        with pytest.raises(ProbeFailed) as failed:
            probe.ask(timeout=1.0)
        assert failed.value.args[0]
    finally:
        probe.close()


@pytest.mark.kafka
def test_the_probe_reads_the_real_clusters_brokers_and_controller():
    probe = ProbeClient()
    try:
        cluster = probe.ask(timeout=10)["cluster"]
    finally:
        probe.close()
    assert cluster["brokers"] and cluster["controller"] in [broker_id for broker_id, _ in cluster["brokers"]]


@pytest.mark.kafka
def test_a_native_crash_in_the_probe_is_one_failed_sample_and_the_next_request_works():
    probe = ProbeClient()
    try:
        assert probe.ask(timeout=10)["cluster"]["brokers"]
        with pytest.raises(ProbeFailed, match="signal 11"):
            probe.ask(timeout=10, crash=True)  # SIGSEGV in the child, as librdkafka's would be
        assert probe.ask(timeout=10)["cluster"]["brokers"]  # a new child
    finally:
        probe.close()


class CrashOnce(ProbeClient):
    def __init__(self):
        super().__init__()
        self.crash_next = True

    def ask(self, **kwargs):
        crash, self.crash_next = self.crash_next, False
        return super().ask(**kwargs, crash=crash)


@pytest.mark.kafka
@pytest.mark.django_db
def test_the_monitor_survives_a_crashed_probe_records_the_cluster_unreachable_and_samples_again():
    probe = CrashOnce()
    monitor = Monitor(lag_reader=LagReader(probe), broadcast=False)
    try:
        first = monitor.tick()
        assert "lag" in first.errors and "signal 11" in first.errors["lag"]
        assert ClusterSample.objects.get().reachable is False
        second = monitor.tick()
        assert "lag" not in second.errors
    finally:
        probe.close()
    overview = cluster_overview(now=timezone.now())
    assert overview is not None and overview.reachable and overview.state in ("healthy", "degraded")


class CoordinatorDown:
    """A probe whose metadata comes back but one group's committed offsets do not (its coordinator was killed)."""

    def ask(self, *, groups, timeout):
        return {"ok": True, "cluster": {"brokers": [[1, "a:9092"], [2, "b:9094"]], "controller": 1,
                                        "topics": {"t": [[0, 1, [1, 2, 3], [1, 2]]]}},
                "lag": {}, "lag_errors": {group: "KafkaException: Failed to get committed offsets: Local: Timed out"
                                          for group in groups}}


@pytest.mark.django_db
def test_a_group_whose_offsets_time_out_still_leaves_the_clusters_state_recorded():
    result = Monitor(lag_reader=LagReader(CoordinatorDown()), broadcast=False).tick()
    assert "Timed out" in result.errors["lag"]
    sample = ClusterSample.objects.get()
    assert sample.reachable and sample.under_replicated == ["t[0]"] and len(sample.brokers) == 2
