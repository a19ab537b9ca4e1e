"""The monitor tick end to end, the evaluate_alerts command, and the consumer's Prometheus exporter."""

import json
import urllib.request
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.management import CommandError, call_command
from prometheus_client import generate_latest

from demands.models import DemandEvent
from demands.monitoring import heartbeat as heartbeat_module
from demands.monitoring.consumers import MonitoringConsumer
from demands.monitoring.lag import PartitionLag
from demands.monitoring.models import Alert, AlertRule, BacklogSample, FlowBucket, LagSample, MonitoringCursor
from demands.monitoring.monitor import Monitor
from demands.monitoring.prometheus import ConsumeLoopCollector, start_consumer_metrics_server
from demands.pipeline.snapshot import LoopSnapshot, position_lags

from .conftest import make_demand, make_rule


class FakeReader:
    def __init__(self, partitions=None, error=None):
        self.partitions = partitions or []
        self.error = error
        self.calls = []

    def read(self, *, group, topics):
        self.calls.append((group, tuple(topics)))
        if self.error:
            raise self.error
        return self.partitions


@pytest.mark.django_db
def test_a_tick_rolls_up_snapshots_samples_lag_evaluates_rules_and_notes_that_it_ran(now):
    demand = make_demand(priority="urgent", received_at=now - timedelta(hours=1))
    DemandEvent.objects.create(demand=demand, kind="status", new_value="resolved", created_at=now - timedelta(minutes=1))
    make_demand(priority="urgent")
    make_rule(AlertRule.Kind.CONSUMER_LAG, threshold=5)
    reader = FakeReader([PartitionLag("demand-topic", 0, 10, 0, 30)])

    result = Monitor(clock=lambda: now, lag_reader=reader, broadcast=False).tick()

    assert result.ok, result.errors
    assert reader.calls == [("unified-msg", ("demand-topic",))]
    assert FlowBucket.objects.get(kind="resolution").count == 1
    assert BacklogSample.objects.get().count == 2
    assert LagSample.objects.get().lag == 20
    assert Alert.objects.get().key == "unified-msg/demand-topic"
    assert MonitoringCursor.objects.get(name="tick").updated_at == now


@pytest.mark.django_db
def test_a_broker_outage_skips_the_lag_sample_but_not_the_rest_of_the_tick(now):
    make_rule(AlertRule.Kind.HEARTBEAT_MISSING, threshold=30)
    result = Monitor(clock=lambda: now, lag_reader=FakeReader(error=RuntimeError("broker down")), broadcast=False).tick()
    assert set(result.errors) == {"lag"}
    assert Alert.objects.filter(kind="heartbeat_missing").count() == 1


@pytest.mark.django_db
def test_groups_reported_by_consumers_are_sampled_too(now):
    from demands.monitoring.models import ConsumerHeartbeat

    ConsumerHeartbeat.objects.create(name="c", hostname="h", pid=1, group="other-group", topics="a,b", started_at=now, last_seen_at=now)
    targets = Monitor(clock=lambda: now, lag_reader=FakeReader(), broadcast=False).lag_targets(now)
    assert targets == {"unified-msg": ["demand-topic"], "other-group": ["a", "b"]}


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_tick_pushes_the_summary_panels_and_last_hour_of_series_to_staff_pages(now, staff_user):
    comm = WebsocketCommunicator(MonitoringConsumer.as_asgi(), "/ws/monitoring/")
    comm.scope["user"] = staff_user
    assert (await comm.connect())[0]
    await sync_to_async(make_demand)(priority="urgent", received_at=now)
    monitor = Monitor(clock=lambda: now, lag_reader=FakeReader(), broadcast=True)
    await sync_to_async(monitor.tick)()

    frame = json.loads(await comm.receive_from(timeout=3))
    assert frame["kind"] == "tick"
    assert "Backlog 1" in frame["summary"] and "1 urgent" in frame["summary"]
    # The verdict and stat cards (above the charts), then the panels (below them).
    assert frame["panels"].lstrip().startswith('<div id="monitor-top">') and '<div id="monitor-panels">' in frame["panels"]
    assert len(frame["series"]["t"]) == 60 and frame["series"]["backlog"]["urgent"][-1] == 1
    await comm.disconnect()


@pytest.mark.django_db
def test_evaluate_alerts_once_runs_one_tick(capsys):
    make_rule(AlertRule.Kind.HEARTBEAT_MISSING, threshold=30)
    call_command("evaluate_alerts", "--once", "--no-lag", "--no-broadcast")
    assert Alert.objects.count() == 1
    assert "alerts:" in capsys.readouterr().out


@pytest.mark.django_db
def test_evaluate_alerts_once_exits_non_zero_when_a_step_failed(monkeypatch):
    from demands.monitoring import monitor

    def broken(**kwargs):
        raise RuntimeError("database is read-only")

    monkeypatch.setattr(monitor, "evaluate_rules", broken)
    with pytest.raises(CommandError, match="read-only"):
        call_command("evaluate_alerts", "--once", "--no-lag", "--no-broadcast")


# -- the consumer's exporter ------------------------------------------------------------------------------

class TP:
    def __init__(self, topic, partition, offset=-1001):
        self.topic, self.partition, self.offset = topic, partition, offset


class FakeKafkaConsumer:
    def assignment(self):
        return [TP("demand-topic", 0), TP("demand-topic", 1)]

    def position(self, partitions):
        return [TP(tp.topic, tp.partition, {0: 90, 1: 5}[tp.partition]) for tp in partitions]

    def get_watermark_offsets(self, tp, cached=False):
        assert cached, "the exporter must not block on the broker"
        return (0, {0: 100, 1: 5}[tp.partition])


class LoopForMetrics:
    def __init__(self):
        self.group = "exporter-test-group"
        self.totals = {"batches": 4, "created": 30, "duplicates": 2, "rejected": 1}
        self._consumer = FakeKafkaConsumer()

    def snapshot(self):  # what ConsumeLoop's thread publishes; the exporter reads only this
        return LoopSnapshot(group=self.group, topics=("demand-topic",), totals=self.totals,
                            partitions=[("demand-topic", 0), ("demand-topic", 1)], lags=position_lags(self._consumer))


class OneCollector:
    def __init__(self, collector):
        self.collector = collector

    def collect(self):
        return self.collector.collect()


def test_the_consumer_exporter_reports_this_processs_loops_and_their_partitions():
    loop = LoopForMetrics()
    heartbeat_module.running_loops.add(loop)
    try:
        text = generate_latest(OneCollector(ConsumeLoopCollector())).decode()
    finally:
        heartbeat_module.running_loops.discard(loop)
    assert 'umsg_consumer_batches_total{group="exporter-test-group"} 4.0' in text
    assert 'umsg_consumer_messages_total{group="exporter-test-group",outcome="created"} 30.0' in text
    assert 'umsg_consumer_messages_total{group="exporter-test-group",outcome="rejected"} 1.0' in text
    assert 'umsg_consumer_assigned_partitions{group="exporter-test-group"} 2.0' in text
    assert 'umsg_consumer_position_lag{group="exporter-test-group",partition="0",topic="demand-topic"} 10.0' in text


def test_the_consumer_exporter_serves_over_http_on_the_given_port():
    loop = LoopForMetrics()
    heartbeat_module.running_loops.add(loop)
    server, thread = start_consumer_metrics_server(0, addr="127.0.0.1")
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
        heartbeat_module.running_loops.discard(loop)
    assert 'umsg_consumer_batches_total{group="exporter-test-group"} 4.0' in text
    assert "process_cpu_seconds_total" in text or "python_info" in text


def test_consume_demands_accepts_a_metrics_port(monkeypatch):
    from demands.management.commands import consume_demands

    started = []
    monkeypatch.setattr("demands.monitoring.prometheus.start_consumer_metrics_server", lambda port, addr="0.0.0.0": started.append(port))

    class StopAtOnce:
        def __init__(self, **kwargs):
            pass

        def run(self):
            pass

    monkeypatch.setattr(consume_demands, "ConsumeLoop", StopAtOnce)
    monkeypatch.setattr(consume_demands.signal, "signal", lambda *args: None)  # keep pytest's handlers
    call_command("consume_demands", "--metrics-port", "9464")
    assert started == [9464]


def test_the_consumer_metrics_server_listens_on_loopback_unless_told_otherwise(monkeypatch, settings):
    from demands.management.commands import consume_demands

    started = []
    monkeypatch.setattr("demands.monitoring.prometheus.start_consumer_metrics_server",
                        lambda port, addr="0.0.0.0": started.append((port, addr)))

    class StopAtOnce:
        def __init__(self, **kwargs):
            pass

        def run(self):
            pass

    monkeypatch.setattr(consume_demands, "ConsumeLoop", StopAtOnce)
    monkeypatch.setattr(consume_demands.signal, "signal", lambda *args: None)
    call_command("consume_demands", "--metrics-port", "9464")
    call_command("consume_demands", "--metrics-port", "9465", "--metrics-addr", "0.0.0.0")
    settings.CONSUMER_METRICS_ADDR = "10.0.0.5"
    call_command("consume_demands", "--metrics-port", "9466")
    assert started == [(9464, "127.0.0.1"), (9465, "0.0.0.0"), (9466, "10.0.0.5")]
