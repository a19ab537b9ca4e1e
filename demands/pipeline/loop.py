"""The consume loop: Kafka → database, in batches, offsets committed after the database commit.

`ConsumeLoop` is what `consume_demands` and the embedded dashboard run:

- It reads in batches: a batch starts with the first record that arrives and takes what else has
  arrived (up to `batch_size`, waiting at most `batch_timeout` for more), so a lone record is
  stored at once and a backlog comes in full batches. Auto-commit and auto offset store are off.
- While the database stores a batch, the records that arrived meanwhile are parsed in a worker
  thread (read-ahead, readahead.py); only the loop's thread touches the Kafka consumer.
- Each batch is persisted in one database transaction (`persist.persist_batch`); invalid records
  are stored as RejectedMessage and copied to the dead-letter topic (dead_letter.py); only then
  are the batch's offsets (the next offset per partition) committed (offsets.py). A crash
  anywhere re-delivers the batch, and idempotent writes make the re-delivery harmless:
  at-least-once delivery, exactly-once storage.
- New demands are broadcast to browsers once per batch, after the database commit (`live`).
- Database or broker errors: the same batch is retried with exponential back-off, without
  committing; after `max_failures` consecutive failures the loop raises ConsumerFailed, so the
  process exits non-zero and its supervisor restarts it, and Kafka re-delivers from the last
  commit (retry.py).
- `stop()` (SIGTERM/SIGINT in the command) finishes the current batch, commits, and closes the
  consumer, which leaves the group at once so its partitions move without waiting for a timeout.
- Poison-pill guard: when more than `max_reject_ratio` of the last `reject_window` records were
  rejected, the batch that crossed the line is rolled back (nothing stored, dead-lettered or
  committed) and the loop raises RejectRatioExceeded — so a broken release or schema change
  stops the consumer instead of dead-lettering the whole stream (guard.py says more).
- Rebalances are logged with what moved and what the consumer holds (rebalance.py); a
  throughput line every `stats_interval` seconds (stats.py).
- Monitoring (heartbeat, Prometheus) reads `snapshot()`, which the loop's thread keeps current
  (snapshot.py), never the consumer.

The loop sets no interpreter-wide state: `consume_demands` tunes the garbage collector and the
thread switch interval for its own process; the dashboard, which runs this loop in a thread of
the web process, keeps Python's defaults.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, fields
from types import MappingProxyType

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from django.conf import settings
from django.db import close_old_connections, connections, transaction
from django.utils import timezone

from .. import live
from ..kafka import client_config, ensure_topics, is_authentication_error, make_producer
from ..monitoring.heartbeat import consumer_heartbeat
from .dead_letter import DeadLetterWriter
from .guard import RejectRatioExceeded, RejectRatioGuard
from .offsets import OffsetCommitter
from .parse import ParsedBatch, current_rules, parse_batch, record_from
from .persist import BatchResult, forget_session_state, persist_batch
from .readahead import ReadAhead
from .rebalance import PartitionOwnership
from .retry import ConsumerFailed, RetryBudget, sleep_unless_stopped
from .snapshot import LoopSnapshot, position_lags
from .stats import LoopStats

__all__ = ["ConsumeLoop", "ConsumerFailed", "LoopOptions", "RejectRatioExceeded"]

logger = logging.getLogger(__name__)


@dataclass
class LoopOptions:
    """How a loop runs. What is left None comes from the settings when the options are made."""

    topics: list[str] | None = None  # KAFKA_TOPICS
    group: str | None = None  # KAFKA_CONSUMER_GROUP
    batch_size: int | None = None  # CONSUMER_BATCH_SIZE
    batch_timeout: float | None = None  # CONSUMER_BATCH_TIMEOUT
    max_failures: int | None = None  # CONSUMER_MAX_FAILURES
    dlq_topic: str | None = None  # KAFKA_DLQ_TOPIC; "" for none
    consumer_overrides: dict | None = None  # librdkafka properties on top of the loop's
    on_batch: Callable[[BatchResult], None] | None = None  # after each committed batch
    broadcast: bool = True
    stats_interval: float = 30.0
    consumer_factory: Callable[[dict], Consumer] = Consumer
    producer_factory: Callable[[], Producer] = make_producer
    create_topics: bool = True
    async_commit: bool | None = None  # CONSUMER_ASYNC_COMMIT
    max_reject_ratio: float | None = None  # CONSUMER_MAX_REJECT_RATIO
    reject_window: int | None = None  # CONSUMER_REJECT_WINDOW
    idle_timeout: float = 0.2  # one wait for a first record (stop requests and heartbeats in between)

    def __post_init__(self) -> None:
        self.topics = list(self.topics or settings.KAFKA_TOPICS)
        self.group = self.group or settings.KAFKA_CONSUMER_GROUP
        self.batch_size = self.batch_size or settings.CONSUMER_BATCH_SIZE
        self.batch_timeout = settings.CONSUMER_BATCH_TIMEOUT if self.batch_timeout is None else self.batch_timeout
        self.max_failures = self.max_failures or settings.CONSUMER_MAX_FAILURES
        self.dlq_topic = settings.KAFKA_DLQ_TOPIC if self.dlq_topic is None else self.dlq_topic
        self.consumer_overrides = self.consumer_overrides or {}
        self.async_commit = settings.CONSUMER_ASYNC_COMMIT if self.async_commit is None else self.async_commit
        self.max_reject_ratio = settings.CONSUMER_MAX_REJECT_RATIO if self.max_reject_ratio is None else self.max_reject_ratio
        self.reject_window = settings.CONSUMER_REJECT_WINDOW if self.reject_window is None else self.reject_window


_OPTION_NAMES = frozenset(field.name for field in fields(LoopOptions))


class ConsumeLoop:
    """Reads batches and drives each through parse, store, dead-letter, broadcast and commit.
    `ConsumeLoop(options)` or `ConsumeLoop(topics=…, group=…, …)` with LoopOptions' fields."""

    def __init__(self, options: LoopOptions | None = None, **option_fields):
        if options is not None and option_fields:
            raise TypeError("pass LoopOptions or its fields, not both")
        self.options = options if options is not None else LoopOptions(**option_fields)
        self.on_batch = self.options.on_batch  # tests and callers may set it after construction
        self._stop = threading.Event()
        self._consumer: Consumer | None = None
        self._connection_checked_at = float("-inf")
        self.stats = LoopStats(interval=self.options.stats_interval)
        self.guard = RejectRatioGuard(max_ratio=self.options.max_reject_ratio, window=self.options.reject_window)
        self.offsets = OffsetCommitter(lambda: self._consumer, asynchronous=self.options.async_commit)
        self.partitions = PartitionOwnership(logger, before_revoke=self.offsets.commit_pending, on_change=self._publish)
        self.dead_letters: DeadLetterWriter | None = None
        self._state = "new"
        self._started_at = None
        self._lags: tuple = ()
        self._lags_at = float("-inf")
        self._snapshot: LoopSnapshot
        self._publish()

    def __getattr__(self, name: str):
        # loop.group, loop.batch_size, …: the options read as the loop's own settings.
        if name in _OPTION_NAMES and "options" in self.__dict__:
            return getattr(self.options, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def totals(self) -> dict[str, int]:
        """batches, created, duplicates, rejected since start (the loop's thread; others: snapshot())."""
        return self.stats.totals

    # -- control ---------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to finish its current batch, commit and exit. Safe from signal handlers."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def snapshot(self) -> LoopSnapshot:
        """What monitoring may know, from any thread: the loop's thread replaces it whole."""
        return self._snapshot

    def _sleep(self, seconds: float) -> None:
        """Back-off that a stop request cuts short (retry.sleep_unless_stopped)."""
        sleep_unless_stopped(seconds, lambda: self.stopping)

    # -- the loop --------------------------------------------------------------------------------
    def run(self) -> None:
        options = self.options
        if options.create_topics:
            ensure_topics([*options.topics, options.dlq_topic] if options.dlq_topic else options.topics)
        self._consumer = options.consumer_factory(self._consumer_config())  # librdkafka's lines go through kafka.client_log
        self.dead_letters = DeadLetterWriter(options.producer_factory(), options.dlq_topic) if options.dlq_topic else None
        self._consumer.subscribe(
            options.topics,
            on_assign=self.partitions.on_assign, on_revoke=self.partitions.on_revoke, on_lost=self.partitions.on_lost,
        )
        self.guard.seed()
        logger.info(
            "consuming %s as group %s (batch %d / %.2fs)",
            ",".join(options.topics), options.group, options.batch_size, options.batch_timeout,
        )
        self.stats.start_window()
        self._started_at = timezone.now()
        self._set_state("running")
        heartbeat = consumer_heartbeat(self)  # monitoring: liveness row and /metrics
        readahead = ReadAhead()
        ahead: tuple[list[Message], Future | None] | None = None  # read ahead, and its parsing job
        try:
            while not self.stopping:
                heartbeat.beat()
                self._refresh_lags()
                if ahead is None:  # nothing read ahead: wait for records, parse them here (no hand-off)
                    messages = self._read(wait=True)
                    if not messages:
                        continue
                    ahead = (messages, None)
                messages, parsing = ahead
                batch = self._parsed_ahead(parsing)
                following = self._read(wait=False)
                ahead = (following, readahead.submit(following, current_rules())) if following else None
                if self._store_with_retries(messages, batch) is None:
                    break  # stop requested while retrying: nothing committed, Kafka re-delivers
                self.stats.log_throughput_if_due()
            self._set_state("stopping")
        except BaseException:
            self._set_state("failed")
            raise
        finally:
            heartbeat.stop()
            readahead.close()
            self._close()

    def _consumer_config(self) -> dict:
        return client_config(
            **{
                "group.id": self.options.group,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "partition.assignment.strategy": "cooperative-sticky",
                # A cooperative rebalance takes two rounds, each noticed at a heartbeat: with the
                # default 3 s, a consumer added to the group started work ~6 s after joining; ~2 s now.
                "heartbeat.interval.ms": 1000,
                # 8 MB of prefetched records instead of librdkafka's 64 MB: same throughput,
                # peak RSS 165 → 126 MB in the ingest benchmark.
                "queued.max.messages.kbytes": 8192,
                "on_commit": self.offsets.on_commit,
                **self.options.consumer_overrides,
            }
        )

    @staticmethod
    def _parsed_ahead(parsing: Future | None) -> ParsedBatch | None:
        """The worker's ParsedBatch; None when there was no job or it failed (the loop parses the
        batch itself then, under the retries)."""
        if parsing is None:
            return None
        try:
            return parsing.result()
        except Exception as exc:
            logger.warning("read-ahead parse failed, parsing again in the loop's thread: %r", exc)
            return None

    def _read(self, *, wait: bool) -> list[Message]:
        """Messages for a batch. wait=True: up to `idle_timeout` for a first record, then what else
        has arrived, waiting at most `batch_timeout` for more — so a lone record is stored at once,
        and a backlog still comes in full batches. wait=False: only what has arrived already."""
        options = self.options
        if wait:
            messages = self._consumer.consume(1, options.idle_timeout)
            if messages and options.batch_size > 1:
                messages += self._consumer.consume(options.batch_size - 1, options.batch_timeout)
        else:
            messages = self._consumer.consume(options.batch_size, 0)
        return self._valid(messages)

    def _valid(self, messages: list[Message]) -> list[Message]:
        valid = []
        for message in messages:
            error = message.error()
            if error is None:
                valid.append(message)
            elif error.code() == KafkaError._PARTITION_EOF:
                continue
            elif error.fatal():
                raise KafkaException(error)
            elif is_authentication_error(error):  # retrying cannot fix credentials: exit, with the reason
                raise ConsumerFailed(f"Kafka refused this consumer: {error.str()}. Check KAFKA_CONFIG_SASL_* / "
                                     "KAFKA_CONFIG_SECURITY_PROTOCOL and the user's ACLs.")
            else:
                # Transient broker/network errors: librdkafka retries by itself; say so once.
                logger.warning("consumer error (librdkafka retries): %s", error)
        return valid

    def _store_with_retries(self, messages: list[Message], batch: ParsedBatch | None) -> BatchResult | None:
        """Store the batch (parsing it here first if `batch` is None), retrying with back-off;
        None if a stop came while waiting to retry."""
        budget = RetryBudget(self.options.max_failures)
        while True:
            try:
                if batch is None:  # here the rules are applied when it is stored (persist_batch)
                    batch = parse_batch([record_from(message) for message in messages])
                return self._handle(batch)
            except RejectRatioExceeded:
                raise  # deterministic: the same batch would be rejected the same way again
            except Exception as exc:  # database down, broker unreachable, constraint race, parser crash…
                delay = budget.failed(exc, records=len(messages))
                self._check_connection(force=True)
                forget_session_state()  # a group deleted by another process fails its batch once
                self._sleep(delay)
                if self.stopping:
                    return None

    def _handle(self, batch: ParsedBatch) -> BatchResult:
        self._check_connection()
        with transaction.atomic():  # so the guard can undo the batch's writes
            result = persist_batch(batch)
            outcomes = self.guard.check(batch.records, result)
        if result.rejected and self.dead_letters is not None:
            self.dead_letters.write(result.rejected)
        if self.options.broadcast and result.created:
            try:
                live.broadcast_demands_created(result.created)
                live.broadcast_notifications(result.notification_ids)  # rule assignments
            except Exception:  # browsers missing an update must not stop ingestion; they catch up
                logger.exception("broadcast of %d new demands failed", len(result.created))
        self.offsets.commit(batch.records)
        self.guard.record(outcomes)
        self.stats.add(result)
        self._publish()
        if self.on_batch is not None:
            self.on_batch(result)
        return result

    def _check_connection(self, *, force: bool = False) -> None:
        """Drop a connection the database closed since the last check (a SELECT 1 with
        CONN_HEALTH_CHECKS). Every 5 s, not every batch: that round trip cost ~8 % of a busy loop.
        A connection lost in between fails one batch, and the retry (force) reconnects."""
        now = time.monotonic()
        if force or now - self._connection_checked_at >= 5.0:
            close_old_connections()
            self._connection_checked_at = now

    # -- the snapshot (built on the loop's thread only) ------------------------------------------
    def _set_state(self, state: str) -> None:
        self._state = state
        self._publish()

    def _refresh_lags(self) -> None:
        """Position lag for monitoring, at most once a second (local calls: cached watermarks)."""
        now = time.monotonic()
        if self._consumer is not None and now - self._lags_at >= 1.0:
            self._lags_at = now
            self._lags = position_lags(self._consumer)
            self._publish()

    def _publish(self) -> None:
        self._snapshot = LoopSnapshot(
            group=self.options.group,
            topics=tuple(self.options.topics),
            state=self._state,
            partitions=sorted(self.partitions.owned),
            totals=MappingProxyType(dict(self.stats.totals)),
            started_at=self._started_at,
            lags=self._lags,
        )

    def _close(self) -> None:
        if self.dead_letters is not None:
            self.dead_letters.close()
        if self._consumer is not None:
            self.offsets.commit_pending()
            try:
                self._consumer.close()  # leave the group now, not after session.timeout.ms
            except RuntimeError:
                pass
        connections.close_all()  # this thread's connections; a thread's are not closed for it
        if self._state != "failed":
            self._set_state("stopped")
        self.stats.log_totals()
