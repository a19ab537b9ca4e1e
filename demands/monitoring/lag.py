"""Consumer lag: committed offsets vs high watermarks per partition, kept over time, and time to drain.

The monitor reads the broker once per tick (`LagReader.read`, admin API: the group's committed
offsets and each partition's earliest/latest offsets), stores one sample per partition per minute
(`record_lag`), and every page, metric and alert rule reads the stored samples (`lag_overview`).
Rates — and so the time to drain — come from how far the committed offsets and high watermarks
moved between the oldest and newest sample of the last few minutes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from . import conf
from .flow import floor_minute, upsert
from .models import LagSample

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
    """Reads a group's lag from the broker with the admin API. One instance per process is enough."""

    def __init__(self, admin: AdminClient | None = None, *, timeout: float = 5.0):
        self._admin = admin
        self.timeout = timeout

    @property
    def admin(self) -> AdminClient:
        if self._admin is None:
            from demands.kafka import client_config

            self._admin = AdminClient(client_config())
        return self._admin

    def read(self, *, group: str, topics: list[str]) -> list[PartitionLag]:
        metadata = self.admin.list_topics(timeout=self.timeout)
        partitions = [
            TopicPartition(topic, partition)
            for topic in topics
            if topic in metadata.topics and metadata.topics[topic].error is None
            for partition in sorted(metadata.topics[topic].partitions)
        ]
        if not partitions:
            return []
        request = [ConsumerGroupTopicPartitions(group, partitions)]
        committed_result = self.admin.list_consumer_group_offsets(request, request_timeout=self.timeout)[group].result()
        committed = {
            (tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else None) for tp in committed_result.topic_partitions
        }
        highs = self._offsets(partitions, OffsetSpec.latest())
        lows = self._offsets(partitions, OffsetSpec.earliest())
        return [
            PartitionLag(
                topic=tp.topic, partition=tp.partition, committed=committed.get((tp.topic, tp.partition)),
                low=lows[(tp.topic, tp.partition)], high=highs[(tp.topic, tp.partition)],
            )
            for tp in partitions
        ]

    def _offsets(self, partitions: list[TopicPartition], spec) -> dict[tuple[str, int], int]:
        futures = self.admin.list_offsets({tp: spec for tp in partitions}, request_timeout=self.timeout)
        return {(tp.topic, tp.partition): future.result().offset for tp, future in futures.items()}


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
