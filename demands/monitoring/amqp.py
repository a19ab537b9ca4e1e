"""RabbitMQ sources in the one inbox: bridge heartbeats, queue samples, the card, /metrics, alerts.

- Every bridge process (`bridge_amqp`, or the one `run_dashboard --amqp` embeds) writes a
  `BridgeHeartbeat` row every 5 s through `BridgeHeartbeatWriter` (the bridge's heartbeat hook):
  per queue what Kafka confirmed (forwarded), what it acked, what it holds unacked, and its rate.
  Several bridges on one queue each write their own row, so their rates and holdings add up. A
  row that cannot be written (database down) is logged once and skipped: bridging goes on.
- Each monitor tick (`sample_amqp`) asks the broker for every queue's ready messages and consumer
  count (a passive queue_declare through pika on one short-lived connection: no management plugin
  needed) and stores one `AmqpQueueSample` per queue and minute: depth = ready + what the live
  bridges hold unacked, with their summed rate. When `AMQP_URL` is not set (settings.AMQP_CONFIGURED
  false) nothing is sampled and the card says "RabbitMQ not configured"; when the broker cannot be
  reached the samples say why — the tick itself never fails for it.
- `depth_growing` and `bridge_dead` are the `amqp_depth_growing` and `amqp_bridge_dead` alert
  conditions (conditions.py registers them like the others).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from . import conf
from .amqp_samples import AmqpQueueSample, BridgeHeartbeat
from .flow import floor_minute

logger = logging.getLogger(__name__)
FRESH = timedelta(minutes=3)  # a queue sample older than this says nothing about now


def configured() -> bool:
    """RabbitMQ is part of this deployment: AMQP_URL was set (or `run_dashboard --amqp`)."""
    return bool(getattr(settings, "AMQP_CONFIGURED", False))


def configured_queues() -> list[str]:
    from demands.intake.amqp import amqp_queues

    return amqp_queues()


# -- the bridge's heartbeat ----------------------------------------------------------------------
class BridgeHeartbeatWriter:
    """The bridge's heartbeat hook: `writer(snapshot, stopped=...)` with the bridge's snapshot
    (relay.BridgeStats.snapshot() plus "held" per queue). Rates are the forwarded count's change
    since the previous write."""

    def __init__(self, *, clock: Callable[[], datetime] = timezone.now, monotonic: Callable[[], float] = time.monotonic):
        self.clock, self.monotonic = clock, monotonic
        self.hostname = socket.gethostname()
        self.name = f"{self.hostname}:{os.getpid()}:bridge:{id(self):x}"[:200]
        self.started_at = clock()
        self._previous: tuple[float, dict[str, int]] | None = None
        self._failing = False

    def __call__(self, snapshot: dict, *, stopped: bool = False) -> None:
        now, mono = self.clock(), self.monotonic()
        forwarded = {queue: counters.get("forwarded", 0) for queue, counters in snapshot.get("queues", {}).items()}
        held = snapshot.get("held", {})
        if self._previous is None:
            since, before = max(mono - (time.time() - snapshot.get("started_at", time.time())), mono - 60), {}
        else:
            since, before = self._previous
        elapsed = max(mono - since, 1e-9)
        counters = {
            queue: {
                "forwarded": count,
                "acked": snapshot["queues"][queue].get("acked", 0),
                "held": 0 if stopped else held.get(queue, 0),
                "rate": 0.0 if stopped else round((count - before.get(queue, 0)) / elapsed, 2),
            }
            for queue, count in forwarded.items()
        }
        error = sys.exc_info()[1] if stopped else None  # on its way out of Bridge.run(): why it stopped
        state = ("failed" if error is not None else "stopped") if stopped else snapshot.get("source_state", "")
        values = {
            "kind": snapshot.get("kind", "amqp")[:16], "hostname": self.hostname[:200], "pid": snapshot.get("pid", os.getpid()),
            "queues": ",".join(forwarded)[:1000], "started_at": self.started_at, "last_seen_at": now,
            "stopped_at": now if stopped else None, "source_state": state[:16],
            "last_error": repr(error) if error is not None else snapshot.get("last_error", ""), "counters": counters,
        }
        try:
            BridgeHeartbeat.objects.update_or_create(name=self.name, defaults=values)
        except Exception as exc:  # database down: never stop bridging for this
            if not self._failing:
                logger.warning("bridge heartbeat not written (will keep trying): %r", exc)
            self._failing = True
            return  # the rate's baseline stays the last written one: the next write's rate spans the gap
        self._failing = False
        self._previous = (mono, forwarded)


def bridge_states(*, now: datetime) -> list[tuple[BridgeHeartbeat, str]]:
    """Bridges seen in the last day with their state (alive | dead | stopped | failed), live first."""
    dead_after = conf.get("MONITORING_CONSUMER_DEAD_AFTER")
    order = {"alive": 0, "dead": 1, "failed": 2, "stopped": 3}
    rows = []
    for hb in BridgeHeartbeat.objects.filter(last_seen_at__gte=now - timedelta(days=1)).order_by("-last_seen_at")[:100]:
        if hb.stopped_at is not None:
            state = "failed" if hb.source_state == "failed" else "stopped"
        else:
            state = "dead" if (now - hb.last_seen_at).total_seconds() > dead_after else "alive"
        rows.append((hb, state))
    return sorted(rows, key=lambda item: (order[item[1]], item[0].name))


def _live_bridges(now: datetime, within: float | None = None) -> list[BridgeHeartbeat]:
    within = within if within is not None else conf.get("MONITORING_CONSUMER_DEAD_AFTER")
    return list(BridgeHeartbeat.objects.filter(stopped_at__isnull=True, last_seen_at__gte=now - timedelta(seconds=within)))


# -- the monitor's sample ------------------------------------------------------------------------
class QueueInspector:
    """Asks RabbitMQ for each queue's ready messages and consumers: one connection per call,
    one passive queue_declare per queue (a missing queue closes the channel: a new one goes on)."""

    def __init__(self, *, url: str | None = None, timeout: float = 3.0):
        self.url, self.timeout = url, timeout

    def __call__(self, queues: list[str]) -> dict[str, dict]:
        import pika
        import pika.exceptions

        from demands.intake.amqp import amqp_url

        parameters = pika.URLParameters(self.url or amqp_url())
        parameters.socket_timeout = parameters.blocked_connection_timeout = self.timeout
        parameters.stack_timeout = self.timeout * 2
        parameters.connection_attempts, parameters.heartbeat = 1, 0
        parameters.client_properties = {"connection_name": f"umsg monitor pid {os.getpid()}"}
        connection = pika.BlockingConnection(parameters)
        try:
            channel, found = connection.channel(), {}
            for queue in queues:
                try:
                    ok = channel.queue_declare(queue, passive=True).method
                    found[queue] = {"ready": ok.message_count, "consumers": ok.consumer_count}
                except pika.exceptions.ChannelClosedByBroker as exc:
                    found[queue] = {"error": f"queue not found ({exc.reply_code})" if exc.reply_code == 404 else str(exc)}
                    channel = connection.channel()
            return found
        finally:
            try:
                connection.close()
            except Exception:
                pass


def sample_amqp(*, now: datetime, inspector: Callable[[list[str]], dict] | None = None) -> int | None:
    """One sample per queue (configured ones and those live bridges read); None when RabbitMQ is
    not configured. A broker that cannot be asked is recorded as unreachable, with the reason."""
    if not configured():
        return None
    from demands.intake.amqp import describe_error

    bridges = _live_bridges(now)
    queues = list(dict.fromkeys(configured_queues() + [q for hb in bridges for q in hb.queue_list()]))
    try:
        found, error = (inspector or QueueInspector())(queues), ""
    except Exception as exc:  # refused, timed out, bad credentials: the card says so
        found, error = {}, describe_error(exc)
    minute = floor_minute(now)
    for queue in queues:
        held = sum(hb.counters.get(queue, {}).get("held", 0) for hb in bridges)
        rate = sum(hb.counters.get(queue, {}).get("rate", 0.0) for hb in bridges)
        bridged = sum(hb.counters.get(queue, {}).get("forwarded", 0) for hb in bridges)
        info = found.get(queue, {"error": error or "not sampled"})
        values = {"sampled_at": now, "reachable": not error, "error": info.get("error", "")[:2000], "unacked": held,
                  "rate": rate, "bridged": bridged, "ready": info.get("ready"), "consumers": info.get("consumers"),
                  "depth": info["ready"] + held if "ready" in info else None}
        AmqpQueueSample.objects.update_or_create(minute=minute, queue=queue[:255], defaults=values)
    if error:
        raise AmqpUnreachable(error)  # recorded above; the tick notes it (one log line per outage) and goes on
    return len(queues)


class AmqpUnreachable(RuntimeError):
    """The broker could not be asked at this sample (the samples say why)."""


def prune_amqp(*, now: datetime) -> int:
    """Queue samples older than 7 days and bridge heartbeats silent for a day go (like lag samples
    and finished consumer heartbeats); run with the monitor's hourly prune."""
    samples, _ = AmqpQueueSample.objects.filter(sampled_at__lt=now - timedelta(days=7)).delete()
    beats, _ = BridgeHeartbeat.objects.filter(last_seen_at__lt=now - timedelta(days=1)).delete()
    return samples + beats


@dataclass(slots=True)
class AmqpOverview:
    configured: bool
    queues: list[AmqpQueueSample] = field(default_factory=list)
    bridges: list[tuple[BridgeHeartbeat, str]] = field(default_factory=list)

    @property
    def error(self) -> str:
        """Why the broker could not be asked at the last sample ("" when it could)."""
        return next((sample.error for sample in self.queues if not sample.reachable), "")


def latest_samples(*, now: datetime) -> list[AmqpQueueSample]:
    newest: dict[str, AmqpQueueSample] = {}
    for sample in AmqpQueueSample.objects.filter(sampled_at__gte=now - FRESH, sampled_at__lte=now).order_by("-sampled_at")[:500]:
        newest.setdefault(sample.queue, sample)
    return [newest[queue] for queue in sorted(newest)]


def amqp_overview(*, now: datetime) -> AmqpOverview:
    if not configured():
        return AmqpOverview(configured=False)
    return AmqpOverview(configured=True, queues=latest_samples(now=now), bridges=bridge_states(now=now))


# -- /metrics ------------------------------------------------------------------------------------
def amqp_metrics(*, now: datetime) -> list:
    """Gauges of the newest queue samples and a counter of what bridges forwarded (nothing when
    RabbitMQ is not configured)."""
    reachable = GaugeMetricFamily("umsg_amqp_broker_reachable", "1 if the monitor reached RabbitMQ at its last sample.")
    depth = GaugeMetricFamily("umsg_amqp_queue_depth", "Messages ready plus unacked by bridges, per queue.", labels=["queue"])
    ready = GaugeMetricFamily("umsg_amqp_queue_ready", "Messages ready for delivery, per queue.", labels=["queue"])
    consumers = GaugeMetricFamily("umsg_amqp_queue_consumers", "Consumers of the queue (bridges).", labels=["queue"])
    rate = GaugeMetricFamily("umsg_amqp_bridge_rate", "Messages per second bridged into Kafka, per queue.", labels=["queue"])
    bridged = CounterMetricFamily("umsg_amqp_bridged", "Messages bridged into Kafka (confirmed), per queue.", labels=["queue"])
    bridges = GaugeMetricFamily("umsg_amqp_bridges", "Bridge processes by state (from heartbeats).", labels=["state"])
    if configured():
        samples = latest_samples(now=now)
        if samples:
            reachable.add_metric([], 0 if any(not s.reachable for s in samples) else 1)
        for sample in samples:
            if sample.depth is not None:
                depth.add_metric([sample.queue], sample.depth)
                ready.add_metric([sample.queue], sample.ready)
            if sample.consumers is not None:
                consumers.add_metric([sample.queue], sample.consumers)
            rate.add_metric([sample.queue], sample.rate or 0.0)
        totals: dict[str, int] = {}
        states: dict[str, int] = {}
        for hb, state in bridge_states(now=now):
            states[state] = states.get(state, 0) + 1
            for queue, counters in hb.counters.items():
                totals[queue] = totals.get(queue, 0) + counters.get("forwarded", 0)
        for queue, total in sorted(totals.items()):
            bridged.add_metric([queue], total)
        for state, count in sorted(states.items()):
            bridges.add_metric([state], count)
    return [reachable, depth, ready, consumers, rate, bridged, bridges]


# -- alert conditions (conditions.py wraps each {key: Finding fields} in Findings) ---------------
def depth_growing(rule, *, now: datetime) -> dict[str, dict] | None:
    """Per queue: depth above `threshold` and higher than at the oldest sample of the last
    `window_minutes`. None without a fresh reachable sample (cannot tell)."""
    if not configured():
        return {}
    start = now - timedelta(minutes=max(rule.window_minutes, 1))
    samples = AmqpQueueSample.objects.filter(reachable=True, depth__isnull=False, sampled_at__gte=start,
                                             sampled_at__lte=now).order_by("sampled_at")
    by_queue: dict[str, list[AmqpQueueSample]] = {}
    for sample in samples:
        by_queue.setdefault(sample.queue, []).append(sample)
    fresh = {queue: rows for queue, rows in by_queue.items() if now - rows[-1].sampled_at <= FRESH}
    if not fresh:
        return None
    findings = {}
    for queue, rows in sorted(fresh.items()):
        first, last = rows[0], rows[-1]
        if last.depth > rule.threshold and last.depth > first.depth:
            findings[f"queue:{queue}"] = dict(
                title=f"RabbitMQ queue {queue}: depth {last.depth:,} and rising (was {first.depth:,})",
                value=last.depth,
                detail=f"Threshold {rule.threshold:,.0f} messages over {rule.window_minutes} min; "
                       f"{last.consumers if last.consumers is not None else '?'} consumer(s), bridging {last.rate or 0:.1f}/s.",
            )
    return findings


def bridge_dead(rule, *, now: datetime) -> dict[str, dict]:
    """Per configured queue: no bridge with a heartbeat in the last `threshold` seconds reads it."""
    if not configured():
        return {}
    within = rule.threshold or conf.get("MONITORING_CONSUMER_DEAD_AFTER")
    live = _live_bridges(now, within)
    seen = [hb for hb, _state in bridge_states(now=now)]
    findings = {}
    for queue in configured_queues():
        if any(queue in hb.queue_list() for hb in live):
            continue
        last = max((hb for hb in seen if queue in hb.queue_list()), key=lambda hb: hb.last_seen_at, default=None)
        findings[f"queue:{queue}"] = dict(
            title=f"No live bridge reads RabbitMQ queue {queue}",
            value=(now - last.last_seen_at).total_seconds() if last else None,
            detail=(f"Last bridge heartbeat {last.last_seen_at:%Y-%m-%d %H:%M:%S %Z} ({last.name}"
                    f"{', stopped' if last.stopped_at else ', never signed off'})." if last
                    else "No bridge was ever seen. Start `manage.py bridge_amqp`."),
        )
    return findings
