"""Consumer liveness: every consume loop writes a heartbeat row every few seconds and signs off.

A process that dies without signing off (kill -9, OOM, lost host) keeps a heartbeat that ages:
after MONITORING_CONSUMER_DEAD_AFTER seconds it shows as dead on the monitoring page, and the
heartbeat alert rule fires. A heartbeat that cannot be written (database down) is logged and
skipped: liveness reporting never stops ingestion. What a heartbeat says about the loop (group,
topics, partitions, totals) comes from the loop's `snapshot()`, never from its Kafka consumer.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import sys
import time
import weakref
from collections.abc import Callable
from datetime import datetime, timedelta

from django.utils import timezone

from . import conf
from .models import ConsumerHeartbeat

logger = logging.getLogger(__name__)

_sequence = itertools.count(1)
# Consume loops running in this process, for the Prometheus collector (see prometheus.py).
running_loops: "weakref.WeakSet" = weakref.WeakSet()


class HeartbeatWriter:
    def __init__(
        self,
        loop,
        *,
        interval: float | None = None,
        clock: Callable[[], datetime] = timezone.now,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.loop = loop
        self.interval = interval if interval is not None else conf.get("MONITORING_HEARTBEAT_SECONDS")
        self.clock = clock
        self.monotonic = monotonic
        self.hostname = socket.gethostname()
        self.name = f"{self.hostname}:{os.getpid()}:{loop.snapshot().group}:{next(_sequence)}"[:200]
        self.started_at = clock()
        self._last_write: float | None = None
        self._failing = False

    def beat(self) -> None:
        """Called every loop iteration; writes at most once per interval."""
        now_mono = self.monotonic()
        if self._last_write is not None and now_mono - self._last_write < self.interval:
            return
        self._last_write = now_mono
        self._write(stopped=False)

    def stop(self) -> None:
        """Sign off. Called from the loop's `finally`: an exception on its way out is the reason."""
        error = sys.exc_info()[1]
        self._write(stopped=True, error=repr(error) if error is not None else "")
        running_loops.discard(self.loop)

    def _write(self, *, stopped: bool, error: str = "") -> None:
        now = self.clock()
        # The loop's snapshot, not its Kafka consumer: a consumer is called only from the thread
        # that polls it, and this writer may run elsewhere.
        snapshot = self.loop.snapshot()
        values = {
            "hostname": self.hostname[:200],
            "pid": os.getpid(),
            "group": snapshot.group[:255],
            "topics": ",".join(snapshot.topics)[:1000],
            "started_at": self.started_at,
            "last_seen_at": now,
            "stopped_at": now if stopped else None,
            "stop_error": error,
            "assignment": sorted(f"{topic}[{partition}]" for topic, partition in snapshot.partitions),
            "batches": snapshot.totals.get("batches", 0),
            "messages": snapshot.messages,
        }
        try:
            ConsumerHeartbeat.objects.update_or_create(name=self.name, defaults=values)
        except Exception as exc:  # database down, connection lost: never stop ingestion for this
            if not self._failing:
                logger.warning("consumer heartbeat not written (will keep trying): %r", exc)
            self._failing = True
            return
        self._failing = False


def consumer_heartbeat(loop) -> HeartbeatWriter:
    """The consume loop's hook: a heartbeat writer for `loop`, which also becomes visible to /metrics."""
    running_loops.add(loop)
    return HeartbeatWriter(loop)


def consumer_states(*, now: datetime) -> list[tuple[ConsumerHeartbeat, str]]:
    """Every known consume loop with its state, live ones first (see `resolve_replaced`)."""
    dead_after = conf.get("MONITORING_CONSUMER_DEAD_AFTER")
    order = {"alive": 0, "dead": 1, "failed": 2, "replaced": 3, "stopped": 4}
    rows = resolve_replaced([(hb, hb.state(now, dead_after)) for hb in ConsumerHeartbeat.objects.order_by("-last_seen_at")[:200]])
    return sorted(rows, key=lambda item: (order[item[1]], item[0].group, item[0].name))


def resolve_replaced(rows: list[tuple[ConsumerHeartbeat, str]]) -> list[tuple[ConsumerHeartbeat, str]]:
    """A dead consumer whose work is done by live ones is "replaced", not dead: the group has a
    live consumer and every partition the dead one held is now held by a live one of its group
    (after a crash the group rebalances its partitions onto the survivors or a restarted process).
    A dead one whose partitions nobody took over stays dead: those partitions are not consumed."""
    owned: dict[str, set[str]] = {}
    for hb, state in rows:
        if state == "alive":
            owned.setdefault(hb.group, set()).update(hb.assignment or ())
    return [
        (hb, "replaced" if state == "dead" and hb.group in owned and set(hb.assignment or ()) <= owned[hb.group] else state)
        for hb, state in rows
    ]


def prune_heartbeats(*, now: datetime) -> int:
    """Forget finished heartbeats after MONITORING_HEARTBEAT_RETENTION_HOURS, and replaced ones
    after MONITORING_REPLACED_RETENTION_HOURS (they only explain a past rebalance). Returns rows deleted."""
    deleted, _ = ConsumerHeartbeat.objects.filter(
        last_seen_at__lt=now - timedelta(hours=conf.get("MONITORING_HEARTBEAT_RETENTION_HOURS"))
    ).delete()
    replaced_before = now - timedelta(hours=conf.get("MONITORING_REPLACED_RETENTION_HOURS"))
    stale = [hb.pk for hb, state in consumer_states(now=now) if state == "replaced" and hb.last_seen_at < replaced_before]
    if stale:
        deleted += ConsumerHeartbeat.objects.filter(pk__in=stale).delete()[0]
    return deleted
