"""Consumer lag: committed offsets vs high watermarks per partition, kept over time, and time to drain.

The monitor reads the broker once per tick (`LagReader.read_all`, through the probe child: each
group's committed offsets and each partition's earliest/latest offsets), stores one sample per partition per minute
(`record_lag`), and every page, metric and alert rule reads the stored samples (`lag_overview`).
Rates — and so the time to drain — come from how far the committed offsets and high watermarks
moved between the oldest and newest sample of the last few minutes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from demands.kafka import broker_outage

from . import conf
from .flow import floor_minute, upsert
from .models import LagSample
from .probe import ProbeClient, ProbeFailed, shared_probe

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None  # None: the group never committed on this partition
    low: int
    high: int

    @property
    def lag(self) -> int:
        """Messages the group has still to read. Without a commit the group starts at the earliest
        offset (auto.offset.reset=earliest), so everything retained is lag."""
        start = self.committed if self.committed is not None else self.low
        return max(self.high - max(start, self.low), 0)


class LagReader:
    """Reads a group's lag from the broker through the probe child (`probe.ProbeClient`): committed
    offsets as the group's own consumer would read them, and each partition's earliest/latest
    offsets. No coordinator-targeted admin request, and none of it in this process."""

    def __init__(self, probe: ProbeClient | None = None, *, timeout: float = 5.0):
        self._probe = probe
        self.timeout = timeout
        self.last_cluster: dict | None = None  # metadata of the last successful read (see cluster.py)
        self.last_errors: dict[str, str] = {}  # group → why its offsets could not be read (metadata still came)

    @property
    def probe(self) -> ProbeClient:
        if self._probe is None:
            self._probe = shared_probe()
        return self._probe

    def read_all(self, targets: dict[str, list[str]]) -> dict[str, list[PartitionLag]]:
        """{group: its partitions' lag} for every group in `targets` ({group: topics}), in one request."""
        answer = self.probe.ask(groups=targets, timeout=self.timeout)
        broker_outage.ok()
        self.last_cluster = answer["cluster"]
        self.last_errors = answer.get("lag_errors") or {}
        return {
            group: [PartitionLag(topic=t, partition=p, committed=c, low=low, high=high) for t, p, c, low, high in rows]
            for group, rows in answer["lag"].items()
        }

    def read(self, *, group: str, topics: list[str]) -> list[PartitionLag]:
        by_group = self.read_all({group: topics})
        if group in self.last_errors:
            raise ProbeFailed(self.last_errors[group])
        return by_group[group]


def record_lag(*, now: datetime, group: str, partitions: list[PartitionLag]) -> None:
    """Store this minute's sample per partition (a later sample in the same minute replaces it)."""
    minute = floor_minute(now)
    upsert(
        LagSample,
        ["minute", "group", "topic", "partition"],
        ["sampled_at", "committed", "low", "high", "lag"],
        [(minute, group, p.topic, p.partition, now, p.committed, p.low, p.high, p.lag) for p in partitions],
        add=False,
    )


# -- reading it back -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Drain:
    """How the backlog of a group moves. seconds is None unless the state is draining or drained."""

    state: str  # drained | draining | keeping_up | growing | stalled | unknown
    seconds: float | None
    consume_rate: float | None  # messages/s committed
    produce_rate: float | None  # messages/s appended

    @property
    def never(self) -> bool:
        return self.state in {"growing", "stalled"}


# A lag the consumers would read in this many seconds at their current pace is just the batch in
# flight: with producers as fast as consumers it is "keeping up", not "growing".
KEEPING_UP_SECONDS = 30


def estimate_drain(*, lag: int, consumed: int, produced: int, seconds: float) -> Drain:
    """Time to drain `lag` at the net rate seen over `seconds` (consumed − produced messages).

    A lag that does not shrink never drains: "stalled" when nothing was consumed, "growing" when
    producers outpace the consumers — unless the lag is small enough to be read within
    KEEPING_UP_SECONDS ("keeping_up"). Without a time span the rates are unknown.
    """
    if seconds <= 0:
        return Drain("drained" if lag <= 0 else "unknown", 0.0 if lag <= 0 else None, None, None)
    consume_rate = max(consumed, 0) / seconds
    produce_rate = max(produced, 0) / seconds
    if lag <= 0:
        return Drain("drained", 0.0, consume_rate, produce_rate)
    if consume_rate == 0:
        return Drain("stalled", None, consume_rate, produce_rate)
    net = consume_rate - produce_rate
    if net <= 0:
        if lag / consume_rate <= KEEPING_UP_SECONDS:
            return Drain("keeping_up", lag / consume_rate, consume_rate, produce_rate)
        return Drain("growing", None, consume_rate, produce_rate)
    return Drain("draining", lag / net, consume_rate, produce_rate)


@dataclass(slots=True)
class LagOverview:
    group: str
    sampled_at: datetime | None
    partitions: list[LagSample] = field(default_factory=list)
    drain: Drain = field(default_factory=lambda: Drain("unknown", None, None, None))

    @property
    def total(self) -> int:
        return sum(sample.lag for sample in self.partitions)

    def by_topic(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for sample in self.partitions:
            totals[sample.topic] = totals.get(sample.topic, 0) + sample.lag
        return totals


def lag_overview(*, group: str, now: datetime) -> LagOverview | None:
    """The group's lag from the newest samples, with the drain estimate; None if no fresh sample."""
    newest = LagSample.objects.filter(group=group).order_by("-sampled_at").first()
    if newest is None or (now - newest.sampled_at).total_seconds() > conf.get("MONITORING_LAG_STALE_SECONDS"):
        return None
    current = list(LagSample.objects.filter(group=group, minute=newest.minute).order_by("topic", "partition"))
    window_start = floor_minute(now) - timedelta(minutes=conf.get("MONITORING_RATE_WINDOW_MINUTES"))
    oldest_minute = (
        LagSample.objects.filter(group=group, minute__gte=window_start, minute__lt=newest.minute)
        .order_by("minute")
        .values_list("minute", flat=True)
        .first()
    )
    overview = LagOverview(group=group, sampled_at=newest.sampled_at, partitions=current)
    lag = overview.total
    if oldest_minute is None:
        overview.drain = estimate_drain(lag=lag, consumed=0, produced=0, seconds=0)
        return overview
    before = {(s.topic, s.partition): s for s in LagSample.objects.filter(group=group, minute=oldest_minute)}
    consumed = produced = 0
    spans = []
    for sample in current:
        old = before.get((sample.topic, sample.partition))
        if old is None:
            continue  # a partition added meanwhile: no rate for it yet
        consumed += _position(sample) - _position(old)
        produced += sample.high - old.high
        spans.append((sample.sampled_at - old.sampled_at).total_seconds())
    seconds = max(spans) if spans else 0.0
    overview.drain = estimate_drain(lag=lag, consumed=consumed, produced=produced, seconds=seconds)
    return overview


def _position(sample: LagSample) -> int:
    return sample.committed if sample.committed is not None else sample.low
