"""Partition ownership: which partitions this consumer holds, kept by the rebalance callbacks.

librdkafka calls the callbacks from consume(), on the loop's thread. Each rebalance is logged
with what it moved and what the consumer holds afterwards, in this exact form (bench/harness.py
reads these lines to tell when every process held its final partitions):

    partitions assigned: t[0,1,2]; consuming t[0,1,2]
    partitions revoked: t[0]; consuming t[1,2]
    partitions lost (session timed out?): …; consuming nothing

Before revoked partitions go, what was stored from them is committed (`before_revoke`). The
lines are written to the loop's logger, where operators (and the benchmark) look for them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from confluent_kafka import TopicPartition


def partition_list(partitions: Iterable[tuple[str, int]]) -> str:
    """topic[0,1,2] other[5] for (topic, partition) pairs."""
    by_topic: dict[str, list[int]] = {}
    for topic, partition in partitions:
        by_topic.setdefault(topic, []).append(partition)
    return " ".join(f"{topic}[{','.join(map(str, sorted(numbers)))}]" for topic, numbers in sorted(by_topic.items()))


class PartitionOwnership:
    def __init__(self, logger: logging.Logger, *, before_revoke: Callable[[], None], on_change: Callable[[], None]):
        self.logger = logger
        self.before_revoke = before_revoke
        self.on_change = on_change
        self.owned: set[tuple[str, int]] = set()  # (topic, partition) assigned to this consumer now

    def on_assign(self, _consumer, partitions: list[TopicPartition]) -> None:
        if not partitions:  # a cooperative rebalance that moved nothing here
            return
        pairs = [(p.topic, p.partition) for p in partitions]
        self.owned.update(pairs)
        self.on_change()
        self.logger.info("partitions assigned: %s; consuming %s", partition_list(pairs), self._owned_text())

    def on_revoke(self, _consumer, partitions: list[TopicPartition]) -> None:
        if not partitions:
            return
        self.before_revoke()
        pairs = [(p.topic, p.partition) for p in partitions]
        self.owned.difference_update(pairs)
        self.on_change()
        self.logger.info("partitions revoked: %s; consuming %s", partition_list(pairs), self._owned_text())

    def on_lost(self, _consumer, partitions: list[TopicPartition]) -> None:
        pairs = [(p.topic, p.partition) for p in partitions]
        self.owned.difference_update(pairs)
        self.on_change()
        self.logger.warning("partitions lost (session timed out?): %s; their records since the last commit will be "
                            "read again by their next owner; consuming %s", partition_list(pairs), self._owned_text())

    def _owned_text(self) -> str:
        return partition_list(self.owned) or "nothing"
