"""The monitor: one tick every MONITORING_TICK_SECONDS, run by `evaluate_alerts` or inside `run_dashboard`.

A tick rolls up new history events (resolutions, time to first action), snapshots the backlog,
samples consumer lag from the broker, evaluates the alert rules, sends due notifications, prunes
old buckets now and then, and pushes the summary and charts to browsers. Each step stands alone:
a broker outage skips the lag sample (lag rules then change nothing) but the rest still runs.
Running two monitors is safe — roll-ups and rule evaluations lock their rows, deliveries are
claimed — so the embedded one and a separate `evaluate_alerts` may overlap during a deploy.
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
from django.utils import timezone

from . import conf, live
from .alerts import evaluate_rules
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
    ):
        self.clock = clock
        self.lag_reader = lag_reader if lag_reader is not None else (LagReader() if sample_lag else None)
        self.broadcast = broadcast
        self.interval = interval if interval is not None else conf.get("MONITORING_TICK_SECONDS")
        self._last_prune: datetime | None = None

    def lag_targets(self, now: datetime) -> dict[str, list[str]]:
        """Groups to sample: the configured one, and every group a consumer reported in the last hour."""
        targets = {settings.KAFKA_CONSUMER_GROUP: list(settings.KAFKA_TOPICS)}
        for group, topics in (
            ConsumerHeartbeat.objects.filter(last_seen_at__gte=now - timedelta(hours=1)).values_list("group", "topics").distinct()
        ):
            merged = targets.setdefault(group, [])
            merged.extend(topic for topic in topics.split(",") if topic and topic not in merged)
        return targets

    def tick(self) -> TickResult:
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
            step("lag", lambda: self._sample_lag(now))
        step("alerts", lambda: evaluate_rules(now=now))
        step("deliveries", lambda: process_deliveries(now=now))
        if self._last_prune is None or now - self._last_prune >= PRUNE_EVERY:
            step("prune", lambda: prune(now=now))
            self._last_prune = now
        step("heartbeat", lambda: MonitoringCursor.objects.update_or_create(name="tick", defaults={"updated_at": now}))
        if self.broadcast:
            step("broadcast", lambda: self._broadcast(now))
        return result

    def _sample_lag(self, now: datetime) -> int:
        sampled = 0
        for group, topics in self.lag_targets(now).items():
            partitions = self.lag_reader.read(group=group, topics=topics)
            record_lag(now=now, group=group, partitions=partitions)
            sampled += len(partitions)
        return sampled

    def _broadcast(self, now: datetime) -> None:
        live.broadcast_tick(
            summary_html=render_to_string("monitoring/_summary.html", summary_context(now=now)),
            panels_html=render_to_string("monitoring/page.html#panels", panels_context(now=now)),
            series=chart_data(now=now, minutes=60),
        )

    def run(self, stop: threading.Event) -> None:
        """Tick until `stop` is set. Failures are logged and retried at the next tick; never exits on them."""
        logger.info("monitor running every %.0fs", self.interval)
        try:
            while not stop.is_set():
                close_old_connections()
                try:
                    self.tick()
                except Exception:
                    logger.exception("monitor tick failed")
                stop.wait(self.interval)
        finally:
            connections.close_all()
