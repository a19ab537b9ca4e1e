"""The monitor: one tick every MONITORING_TICK_SECONDS, run by `evaluate_alerts` or inside `run_dashboard`.

A tick rolls up new history events (resolutions, time to first action), snapshots the backlog,
samples consumer lag and the cluster's state from the broker (through the probe child, so a
librdkafka crash there costs one sample, never this process), RabbitMQ's queues when configured
(amqp.py), evaluates the alert rules, moves the SLA timers on (reminders, escalation steps:
demands.sla.escalation), sends due notifications (alerts', and people's from demands/outbound), prunes old buckets now and then,
and pushes the summary and charts to browsers (rendered once in each language read, see
`_broadcast`). Each step stands alone:
a broker outage skips the lag sample (lag rules then change nothing) but the rest still runs.
Running two monitors is safe — roll-ups and rule evaluations lock their rows, deliveries are
claimed — so the embedded one and a separate `evaluate_alerts` may overlap during a deploy.

In `run` the notifications go out on a thread of their own, woken after each evaluation: a slow
or dead webhook receiver (up to MONITORING_WEBHOOK_TIMEOUT per delivery, 50 per drain) delays
other notifications, never the next evaluation. One thread, and wake-ups while it is busy merge
into one, so the work stays bounded. `tick()` alone (`evaluate_alerts --once`) still sends inline.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, connections
from django.template.loader import render_to_string
from django.utils import timezone, translation

from demands.archive.services import archive_due
from demands.kafka import OutageLog
from demands.sla.escalation import sla_tick

from ..outbound.dispatch import deliver_due as deliver_notifications
from . import conf, live
from .alerts import evaluate_rules
from .amqp import prune_amqp, sample_amqp
from .cluster import record_cluster
from .flow import prune, rollup_history, snapshot_backlog
from .lag import LagReader, record_lag
from .metrics import chart_data
from .models import ConsumerHeartbeat, MonitoringCursor
from .notify import process_deliveries
from .panels import panels_context, summary_context

logger = logging.getLogger(__name__)
PRUNE_EVERY = timedelta(hours=1)


@dataclass(slots=True)
class TickResult:
    at: datetime
    steps: dict[str, object] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


class Monitor:
    def __init__(
        self,
        *,
        clock: Callable[[], datetime] = timezone.now,
        lag_reader: LagReader | None = None,
        sample_lag: bool = True,
        broadcast: bool = True,
        interval: float | None = None,
        amqp_inspector=None,
    ):
        self.clock = clock
        self.lag_reader = lag_reader if lag_reader is not None else (LagReader() if sample_lag else None)
        self.broadcast = broadcast
        self.interval = interval if interval is not None else conf.get("MONITORING_TICK_SECONDS")
        self._last_prune: datetime | None = None
        self._broker_log = OutageLog(logger, "Kafka, for the monitor's lag and cluster sample")
        self.amqp_inspector = amqp_inspector  # None: monitoring/amqp.QueueInspector (pika)
        self._amqp_log = OutageLog(logger, "RabbitMQ, for the monitor's queue sample")

    def lag_targets(self, now: datetime) -> dict[str, list[str]]:
        """Groups to sample: the configured one, and every group a consumer reported in the last hour."""
        targets = {settings.KAFKA_CONSUMER_GROUP: list(settings.KAFKA_TOPICS)}
        for group, topics in (
            ConsumerHeartbeat.objects.filter(last_seen_at__gte=now - timedelta(hours=1)).values_list("group", "topics").distinct()
        ):
            merged = targets.setdefault(group, [])
            merged.extend(topic for topic in topics.split(",") if topic and topic not in merged)
        return targets

    def tick(self, *, deliver: bool = True) -> TickResult:
        now = self.clock()
        result = TickResult(at=now)

        def step(name, function):
            try:
                result.steps[name] = function()
            except Exception as exc:
                logger.warning("monitor step %s failed: %r", name, exc, exc_info=logger.isEnabledFor(logging.DEBUG))
                result.errors[name] = repr(exc)

        step("rollup", lambda: rollup_history(now=now))
        step("backlog", lambda: snapshot_backlog(now=now))
        if self.lag_reader is not None:
            try:  # a broker outage fails this every tick: one line when it starts, a summary a minute
                result.steps["lag"] = self._sample_lag(now)
                self._broker_log.ok()
            except Exception as exc:
                self._broker_log.failed(repr(exc))
                result.errors["lag"] = repr(exc)
        try:  # RabbitMQ sources (nothing when AMQP_URL is unset); an outage is recorded, never fatal
            result.steps["amqp"] = sample_amqp(now=now, inspector=self.amqp_inspector)
            self._amqp_log.ok()
        except Exception as exc:
            self._amqp_log.failed(repr(exc))
            result.errors["amqp"] = repr(exc)
        step("alerts", lambda: evaluate_rules(now=now))
        step("archive", lambda: archive_due(now=now).archived)  # one bounded batch of closed, old demands
        step("sla", lambda: sla_tick(now=now))  # SLA states, reminders and escalation steps (demands.sla)
        if deliver:
            step("deliveries", lambda: process_deliveries(now=now))
            step("notifications", lambda: deliver_notifications(now=now))
        if self._last_prune is None or now - self._last_prune >= PRUNE_EVERY:
            step("prune", lambda: prune(now=now))
            step("prune_amqp", lambda: prune_amqp(now=now))
            self._last_prune = now
        step("heartbeat", lambda: MonitoringCursor.objects.update_or_create(name="tick", defaults={"updated_at": now}))
        if self.broadcast:
            step("broadcast", lambda: self._broadcast(now))
        return result

    def _sample_lag(self, now: datetime) -> int:
        """One probe request for every group's lag and the cluster's state; a failure (broker
        unreachable, refused, the probe child crashed) records the cluster as unreachable with
        the reason and skips the lag sample — lag rules then change nothing this tick."""
        read_all = getattr(self.lag_reader, "read_all", None)
        targets = self.lag_targets(now)
        try:
            if read_all is not None:
                by_group = read_all(targets)
            else:  # a reader with only read() (tests' fakes)
                by_group = {group: self.lag_reader.read(group=group, topics=topics) for group, topics in targets.items()}
        except Exception as exc:
            if read_all is not None:
                record_cluster(now=now, metadata=None, error=str(exc))
            raise
        sampled = 0
        for group, partitions in by_group.items():
            record_lag(now=now, group=group, partitions=partitions)
            sampled += len(partitions)
        cluster = getattr(self.lag_reader, "last_cluster", None)
        if read_all is not None and cluster is not None:
            record_cluster(now=now, metadata=cluster)
        errors = getattr(self.lag_reader, "last_errors", None)
        if errors:  # the cluster was sampled; these groups' lag was not (their coordinator is moving)
            raise RuntimeError("; ".join(f"lag of group {group}: {error}" for group, error in sorted(errors.items())))
        return sampled

    def _broadcast(self, now: datetime) -> None:
        """Read once, render once per language read (demands.live.languages_needed), send once:
        each socket forwards its reader's language."""
        from demands.live import languages_needed

        summary = summary_context(now=now)
        page = {**panels_context(now=now), **summary}
        summary_html, panels_html = {}, {}
        for code in languages_needed():
            with translation.override(code):
                summary_html[code] = render_to_string("monitoring/_summary.html", summary)
                panels_html[code] = render_to_string("monitoring/page.html#top", page) + render_to_string(
                    "monitoring/page.html#panels", page
                )
        live.broadcast_tick(summary_html=summary_html, panels_html=panels_html, series=chart_data(now=now, minutes=60))

    def run(self, stop: threading.Event) -> None:
        """Tick until `stop` is set. Failures are logged and retried at the next tick; never exits on them."""
        logger.info("monitor running every %.0fs", self.interval)
        wake = threading.Event()
        sender = threading.Thread(target=self._send_deliveries, args=(stop, wake), name="monitor-deliveries", daemon=True)
        sender.start()
        try:
            while not stop.is_set():
                close_old_connections()
                try:
                    self.tick(deliver=False)
                except Exception:
                    logger.exception("monitor tick failed")
                wake.set()
                stop.wait(self.interval)
        finally:
            wake.set()
            sender.join(conf.get("MONITORING_WEBHOOK_TIMEOUT") + 5)
            connections.close_all()

    def _send_deliveries(self, stop: threading.Event, wake: threading.Event) -> None:
        try:
            while True:
                wake.wait()
                if stop.is_set():
                    return
                wake.clear()
                close_old_connections()
                try:
                    process_deliveries(now=self.clock())
                except Exception:
                    logger.exception("sending notifications failed")
                try:  # people's notifications (demands/outbound): flood control, then the outbox
                    deliver_notifications(now=self.clock())
                except Exception:
                    logger.exception("sending people's notifications failed")
        finally:
            connections.close_all()
