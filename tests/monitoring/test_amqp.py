"""RabbitMQ sources in the one inbox, with fakes: bridge heartbeats, the monitor's queue samples,
the card, /metrics and the two alert rule kinds (no broker; tests/integration/test_amqp_monitoring.py
has the real one)."""

from datetime import timedelta

import pytest
from django.db import OperationalError

from demands.monitoring.alerts import evaluate_rules
from demands.monitoring.amqp import BridgeHeartbeatWriter, amqp_overview, sample_amqp
from demands.monitoring.amqp_samples import AmqpQueueSample, BridgeHeartbeat
from demands.monitoring.models import Alert, AlertRule
from demands.monitoring.monitor import Monitor

from .conftest import NOW, make_rule

pytestmark = pytest.mark.django_db


@pytest.fixture
def amqp(settings):
    settings.AMQP_CONFIGURED = True
    settings.AMQP_QUEUES = ["demands"]
    return settings


def inspector(**queues):
    calls = []

    def inspect(names):
        calls.append(list(names))
        return {name: queues[name] for name in names if name in queues}

    inspect.calls = calls
    return inspect


def refused(_names):
    raise ConnectionRefusedError(111, "Connection refused")


def beat(*, now=NOW, queue="demands", held=0, forwarded=0, rate=0.0, name="host:1:bridge", stopped=False):
    return BridgeHeartbeat.objects.update_or_create(name=name, defaults=dict(
        hostname="host", pid=1, queues=queue, started_at=now - timedelta(minutes=5), last_seen_at=now,
        stopped_at=now if stopped else None, source_state="stopped" if stopped else "connected",
        counters={queue: {"forwarded": forwarded, "acked": forwarded, "held": held, "rate": rate}},
    ))[0]


def test_without_amqp_url_nothing_is_sampled_and_the_card_says_not_configured(settings, staff_client):
    settings.AMQP_CONFIGURED = False
    fake = inspector(demands={"ready": 5, "consumers": 0})
    assert sample_amqp(now=NOW, inspector=fake) is None
    assert fake.calls == [] and not AmqpQueueSample.objects.exists()
    assert "RabbitMQ not configured" in staff_client.get("/monitoring/").content.decode()
    assert "umsg_amqp_queue_depth{" not in staff_client.get("/metrics").content.decode()


def test_depth_is_ready_plus_what_live_bridges_hold_and_their_rates_add_up(amqp):
    beat(held=40, forwarded=1000, rate=120.0, name="a")
    beat(held=10, forwarded=500, rate=80.0, name="b")
    beat(held=99, forwarded=7, rate=50.0, name="gone", stopped=True)  # signed off: holds nothing
    assert sample_amqp(now=NOW, inspector=inspector(demands={"ready": 250, "consumers": 2})) == 1
    sample = AmqpQueueSample.objects.get(queue="demands")
    assert (sample.ready, sample.unacked, sample.depth, sample.consumers) == (250, 50, 300, 2)
    assert sample.rate == 200.0 and sample.bridged == 1500 and sample.reachable


def test_queues_of_live_bridges_are_sampled_besides_the_configured_ones(amqp):
    beat(queue="orders", name="orders-bridge")
    fake = inspector(demands={"ready": 0, "consumers": 0}, orders={"ready": 3, "consumers": 1})
    sample_amqp(now=NOW, inspector=fake)
    assert fake.calls == [["demands", "orders"]]
    assert sorted(AmqpQueueSample.objects.values_list("queue", "depth")) == [("demands", 0), ("orders", 3)]


def test_the_card_shows_depth_consumers_and_rate_per_queue(amqp, staff_client, now):
    from django.utils import timezone

    now = timezone.now()
    beat(now=now, held=5, rate=12.5)
    sample_amqp(now=now, inspector=inspector(demands={"ready": 45, "consumers": 1}))
    page = staff_client.get("/monitoring/").content.decode()
    assert 'id="amqp-card"' in page
    row = page[page.index('data-queue="demands"'):].split("</tr>")[0]
    assert "<td class=\"num\">50</td>" in row and "12.5" in row
    assert "host:1:bridge" in page


def test_metrics_have_depth_consumers_and_a_bridged_counter_per_queue(amqp, staff_client):
    from django.utils import timezone

    now = timezone.now()
    beat(now=now, held=5, forwarded=1234, rate=3.0)
    sample_amqp(now=now, inspector=inspector(demands={"ready": 45, "consumers": 1}))
    text = staff_client.get("/metrics").content.decode()
    assert 'umsg_amqp_queue_depth{queue="demands"} 50.0' in text
    assert 'umsg_amqp_queue_consumers{queue="demands"} 1.0' in text
    assert 'umsg_amqp_bridged_total{queue="demands"} 1234.0' in text
    assert 'umsg_amqp_bridge_rate{queue="demands"} 3.0' in text
    assert "umsg_amqp_broker_reachable 1.0" in text


def test_an_unreachable_broker_is_recorded_with_its_reason_and_the_tick_goes_on(amqp, staff_client):
    from django.utils import timezone

    now = timezone.now()
    monitor = Monitor(clock=lambda: now, sample_lag=False, broadcast=False, amqp_inspector=refused)
    result = monitor.tick()
    assert "amqp" in result.errors and "alerts" in result.steps and "heartbeat" in result.steps
    sample = AmqpQueueSample.objects.get(queue="demands")
    assert not sample.reachable and "Connection refused" in sample.error and sample.depth is None
    assert amqp_overview(now=now).error == sample.error
    page = staff_client.get("/monitoring/").content.decode()
    assert "unreachable" in page and "Connection refused" in page
    assert "umsg_amqp_broker_reachable 0.0" in staff_client.get("/metrics").content.decode()


def test_depth_growing_fires_while_the_depth_rises_and_resolves_when_it_falls(amqp):
    make_rule(AlertRule.Kind.AMQP_DEPTH_GROWING, threshold=10, window_minutes=5)
    sample_amqp(now=NOW - timedelta(minutes=3), inspector=inspector(demands={"ready": 0, "consumers": 0}))
    assert evaluate_rules(now=NOW - timedelta(minutes=3)) is not None
    assert not Alert.objects.exists()  # one sample: no rise yet
    sample_amqp(now=NOW, inspector=inspector(demands={"ready": 50, "consumers": 0}))
    evaluate_rules(now=NOW)
    alert = Alert.objects.get(resolved_at__isnull=True)
    assert "RabbitMQ queue demands: depth 50 and rising" in alert.title
    later = NOW + timedelta(minutes=1)
    sample_amqp(now=later, inspector=inspector(demands={"ready": 5, "consumers": 1}))
    evaluate_rules(now=later)
    assert not Alert.objects.filter(resolved_at__isnull=True).exists()


def test_depth_growing_changes_nothing_without_a_fresh_sample(amqp):
    from demands.monitoring.amqp import depth_growing

    rule = make_rule(AlertRule.Kind.AMQP_DEPTH_GROWING, threshold=0, window_minutes=10)
    sample_amqp(now=NOW - timedelta(minutes=9), inspector=inspector(demands={"ready": 1, "consumers": 0}))
    assert depth_growing(rule, now=NOW) is None


def test_bridge_dead_fires_for_a_queue_no_live_bridge_reads(amqp):
    make_rule(AlertRule.Kind.AMQP_BRIDGE_DEAD, threshold=30)
    evaluate_rules(now=NOW)
    alert = Alert.objects.get(resolved_at__isnull=True)
    assert alert.title == "No live bridge reads RabbitMQ queue demands" and "No bridge was ever seen" in alert.detail
    beat(now=NOW + timedelta(seconds=10))
    evaluate_rules(now=NOW + timedelta(seconds=20))
    assert not Alert.objects.filter(resolved_at__isnull=True).exists()
    evaluate_rules(now=NOW + timedelta(seconds=60))  # its heartbeat went silent
    assert "never signed off" in Alert.objects.get(resolved_at__isnull=True).detail


def test_the_rules_say_nothing_when_rabbitmq_is_not_configured(settings):
    settings.AMQP_CONFIGURED = False
    make_rule(AlertRule.Kind.AMQP_BRIDGE_DEAD, threshold=30)
    make_rule(AlertRule.Kind.AMQP_DEPTH_GROWING, threshold=0)
    evaluate_rules(now=NOW)
    assert not Alert.objects.exists()


def test_the_heartbeat_writer_reports_rates_from_the_forwarded_count_and_signs_off(amqp):
    clock, mono = [NOW], [100.0]
    writer = BridgeHeartbeatWriter(clock=lambda: clock[0], monotonic=lambda: mono[0])
    snapshot = {"kind": "amqp", "pid": 7, "started_at": 0, "source_state": "connected", "last_error": "",
                "queues": {"demands": {"forwarded": 100, "acked": 90}}, "held": {"demands": 10}}
    writer(snapshot)
    mono[0], clock[0] = 105.0, NOW + timedelta(seconds=5)
    writer({**snapshot, "queues": {"demands": {"forwarded": 600, "acked": 590}}})
    hb = BridgeHeartbeat.objects.get()
    assert hb.counters["demands"] == {"forwarded": 600, "acked": 590, "held": 10, "rate": 100.0}
    assert hb.stopped_at is None and hb.queue_list() == ["demands"]
    writer({**snapshot, "queues": {"demands": {"forwarded": 600, "acked": 600}}}, stopped=True)
    hb.refresh_from_db()
    assert hb.stopped_at is not None and hb.counters["demands"]["held"] == 0 and hb.source_state == "stopped"


def test_a_heartbeat_that_could_not_be_written_keeps_the_rates_baseline(amqp, monkeypatch):
    """A failed write ("database table is locked") must not swallow what was forwarded meanwhile:
    the next write's rate spans the gap (it read 0.0, and the real-broker test waited for a rate in vain)."""
    clock, mono = [NOW], [100.0]
    writer = BridgeHeartbeatWriter(clock=lambda: clock[0], monotonic=lambda: mono[0])
    snapshot = {"kind": "amqp", "pid": 7, "started_at": 0, "source_state": "connected", "last_error": "",
                "queues": {"demands": {"forwarded": 100, "acked": 100}}, "held": {}}
    writer(snapshot)
    real = BridgeHeartbeat.objects.update_or_create

    def locked(**kwargs):
        raise OperationalError("database table is locked: demands_bridgeheartbeat")

    monkeypatch.setattr(BridgeHeartbeat.objects, "update_or_create", locked)
    mono[0] = 105.0
    writer({**snapshot, "queues": {"demands": {"forwarded": 600, "acked": 600}}})  # not written
    monkeypatch.setattr(BridgeHeartbeat.objects, "update_or_create", real)
    mono[0] = 110.0
    writer({**snapshot, "queues": {"demands": {"forwarded": 600, "acked": 600}}})
    assert BridgeHeartbeat.objects.get().counters["demands"]["rate"] == 50.0  # 500 over the 10 s since the last write


def test_old_queue_samples_and_long_silent_bridge_heartbeats_are_pruned(amqp):
    from demands.monitoring.amqp import prune_amqp

    sample_amqp(now=NOW - timedelta(days=8), inspector=inspector(demands={"ready": 1, "consumers": 0}))
    sample_amqp(now=NOW, inspector=inspector(demands={"ready": 2, "consumers": 0}))
    beat(now=NOW - timedelta(days=2), name="old")
    beat(now=NOW, name="new")
    assert prune_amqp(now=NOW) == 2
    assert list(AmqpQueueSample.objects.values_list("ready", flat=True)) == [2]
    assert list(BridgeHeartbeat.objects.values_list("name", flat=True)) == ["new"]
