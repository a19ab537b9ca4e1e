"""Outages for the charts' shading: minutes the broker was unreachable (the monitor's cluster
samples) and minutes no consumer of the group was running (the heartbeats' started → last seen
intervals). Heartbeats are kept MONITORING_HEARTBEAT_RETENTION_HOURS (replaced ones less), so
older "no consumer" periods are shown only as far as the rows reach."""

from __future__ import annotations

from datetime import datetime, timedelta

from . import conf
from .models import ClusterSample, ConsumerHeartbeat


def outages(*, start: datetime, end: datetime, group: str) -> list[list]:
    """[[from unix s, to unix s, "broker" | "consumers"], …] within [start, end + 1 minute)."""
    spans: list[list] = []
    down = sorted(ClusterSample.objects.filter(minute__gte=start, minute__lte=end, reachable=False).values_list("minute", flat=True))
    spans += _runs([int(minute.timestamp()) for minute in down], "broker")

    grace = timedelta(seconds=conf.get("MONITORING_CONSUMER_DEAD_AFTER"))
    intervals = sorted(
        (hb.started_at, (hb.stopped_at or hb.last_seen_at) + (timedelta(0) if hb.stopped_at else grace))
        for hb in ConsumerHeartbeat.objects.filter(group=group, last_seen_at__gte=start - grace).only(
            "started_at", "last_seen_at", "stopped_at"
        )
    )
    cursor, window_end = start, end + timedelta(minutes=1)
    for begin, finish in intervals:
        if begin > cursor:
            spans.append([int(cursor.timestamp()), int(min(begin, window_end).timestamp()), "consumers"])
        cursor = max(cursor, finish)
        if cursor >= window_end:
            break
    if cursor < window_end and intervals:  # no consumer since the last one stopped (none at all: nothing to say)
        spans.append([int(cursor.timestamp()), int(window_end.timestamp()), "consumers"])
    return [span for span in spans if span[1] > span[0]]


def _runs(minutes: list[int], kind: str) -> list[list]:
    runs: list[list] = []
    for t in minutes:
        if runs and runs[-1][1] == t:
            runs[-1][1] = t + 60
        else:
            runs.append([t, t + 60, kind])
    return runs
