"""Offset commits: a batch's offsets go to Kafka only after its database commit.

- What is committed is the next offset per partition (one past the batch's last record there).
- Asynchronous by default (CONSUMER_ASYNC_COMMIT): the commit is sent after the database commit
  (the order that matters) and the loop does not wait ~5 ms for the group coordinator on every
  batch — about 1.8x throughput (bench/README.md). librdkafka reports each commit on a later
  poll (`on_commit`); offsets not yet confirmed are kept, and committed synchronously when
  partitions are revoked (the next owner then starts after them; the asynchronous commits still
  in flight would fail with the old generation) and when the consumer closes.
- A commit refused because partitions moved during the batch (rebalance in progress, old
  generation, unknown member, no offset) is skipped, not retried: the new owner re-reads the
  batch, and idempotent writes make that harmless. Any other commit error fails the batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from ..kafka import broker_outage
from .parse import IncomingMessage

logger = logging.getLogger(__name__)

# Commit errors that mean "the partitions moved": nothing to retry, the next owner re-reads.
REBALANCE_ERRORS = frozenset(
    {KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION, KafkaError.UNKNOWN_MEMBER_ID, KafkaError._NO_OFFSET}
)


def next_offsets(records: list[IncomingMessage]) -> dict[tuple[str, int], int]:
    """(topic, partition) → the offset after the last of `records` there: what to commit."""
    offsets: dict[tuple[str, int], int] = {}
    for record in records:
        key = (record.topic, record.partition)
        offsets[key] = max(offsets.get(key, -1), record.offset + 1)
    return offsets


def _partitions(offsets: dict[tuple[str, int], int]) -> list[TopicPartition]:
    return [TopicPartition(topic, partition, offset) for (topic, partition), offset in offsets.items()]


class OffsetCommitter:
    """Commits for the loop's consumer (`consumer()` returns it; None before it exists). Used only
    from the loop's thread: librdkafka calls `on_commit` from consume(), on that thread too."""

    def __init__(self, consumer: Callable[[], Consumer | None], *, asynchronous: bool):
        self.consumer = consumer
        self.asynchronous = asynchronous
        self.uncommitted: dict[tuple[str, int], int] = {}  # sent asynchronously, not yet confirmed

    def commit(self, records: list[IncomingMessage]) -> None:
        offsets = next_offsets(records)
        try:
            self.uncommitted.update(offsets)
            self.consumer().commit(offsets=_partitions(offsets), asynchronous=self.asynchronous)
            if not self.asynchronous:
                self.uncommitted.clear()
        except KafkaException as exc:
            code = exc.args[0].code() if exc.args and isinstance(exc.args[0], KafkaError) else None
            if code in REBALANCE_ERRORS:
                logger.info("offset commit skipped after a rebalance: %s", exc)
                return
            raise

    def on_commit(self, error, partitions) -> None:
        """librdkafka's report of an asynchronous commit (the consumer's `on_commit` callback)."""
        if error is not None:
            logger.warning("offset commit failed (these records will be read again, harmlessly): %s", error)
            return
        broker_outage.ok()  # the coordinator answered: the broker is back, if it was gone
        for partition in partitions or ():
            key = (partition.topic, partition.partition)
            if partition.error is None and self.uncommitted.get(key) == partition.offset:
                del self.uncommitted[key]

    def commit_pending(self) -> None:
        """Before partitions go (revoke, close): commit the unconfirmed offsets synchronously."""
        consumer = self.consumer()
        if not self.uncommitted or consumer is None:
            return
        try:
            consumer.commit(offsets=_partitions(self.uncommitted), asynchronous=False)
            self.uncommitted.clear()
        except KafkaException as exc:  # rebalanced away or broker gone: the next owner re-reads, harmlessly
            logger.info("final offset commit skipped: %s", exc)
