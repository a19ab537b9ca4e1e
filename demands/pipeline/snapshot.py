"""What monitoring may know about a running consume loop, safe to read from any thread.

The loop's thread builds a new frozen LoopSnapshot whenever something in it changes (a batch
stored, a rebalance, a state change; the position lag at most once a second) and replaces the
previous one — one reference assignment, which other threads see whole. The heartbeat and the
Prometheus collector read `ConsumeLoop.snapshot()` and never the Kafka consumer: a librdkafka
consumer is not to be called from a thread other than the one that polls it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Mapping

from confluent_kafka import Consumer

EMPTY_TOTALS = MappingProxyType({"batches": 0, "created": 0, "duplicates": 0, "rejected": 0})


@dataclass(frozen=True)
class LoopSnapshot:
    group: str
    topics: tuple[str, ...]
    state: str = "new"  # new → running → stopping → stopped, or failed
    partitions: list[tuple[str, int]] = field(default_factory=list)  # owned now, sorted
    totals: Mapping[str, int] = field(default_factory=lambda: EMPTY_TOTALS)  # batches, created, duplicates, rejected
    started_at: datetime | None = None
    lags: tuple[tuple[str, int, int | None], ...] = ()  # (topic, partition, high watermark − position)

    @property
    def messages(self) -> int:
        return sum(self.totals.get(key, 0) for key in ("created", "duplicates", "rejected"))


def position_lags(consumer: Consumer) -> tuple[tuple[str, int, int | None], ...]:
    """Records behind the high watermark per assigned partition, from librdkafka's cached
    watermarks (no broker round trip). Call it only from the loop's thread."""
    try:
        partitions = consumer.position(consumer.assignment())
    except Exception:  # closed, or a test double
        return ()
    result = []
    for tp in partitions:
        try:
            _low, high = consumer.get_watermark_offsets(tp, cached=True)
        except Exception:
            high = None
        lag = max(high - tp.offset, 0) if high is not None and high >= 0 and tp.offset >= 0 else None
        result.append((tp.topic, tp.partition, lag))
    return tuple(sorted(result, key=lambda item: item[:2]))
