"""The consume loop: Kafka → database, in batches, offsets committed after the database commit.

`ConsumeLoop` is what `consume_demands` and the embedded dashboard run:

- It reads in batches: a batch starts with the first record that arrives and takes what else has
  arrived (up to `batch_size`, waiting at most `batch_timeout` for more), so a lone record is
  stored at once and a backlog comes in full batches. Auto-commit and auto offset store are off.
- While the database stores a batch, the records that arrived meanwhile are parsed in a worker
  thread (read-ahead); only the loop's thread touches the Kafka consumer.
- Each batch is persisted in one database transaction (`ingest.persist_batch`); invalid records
  are stored as RejectedMessage and copied to the dead-letter topic; only then are the batch's
  offsets (the next offset per partition) committed. A crash anywhere re-delivers the batch, and
  idempotent writes make the re-delivery harmless: at-least-once delivery, exactly-once storage.
- New demands are broadcast to browsers once per batch, after the database commit.
- Database or broker errors: the same batch is retried with exponential back-off, without
  committing; after `max_failures` consecutive failures the loop raises, so the process exits
  non-zero and its supervisor restarts it (and Kafka re-delivers from the last commit).
- `stop()` (SIGTERM/SIGINT in the command) finishes the current batch, commits, and closes the
  consumer, which leaves the group at once so its partitions move without waiting for a timeout.
- Poison-pill guard: when more than `max_reject_ratio` of the last `reject_window` records were
  rejected, the batch that crossed the line is rolled back (nothing stored, dead-lettered or
  committed) and the loop raises RejectRatioExceeded — so a broken release or schema change
  stops the consumer instead of dead-lettering the whole stream. Fix, restart, and Kafka
  re-delivers from the last commit. The window is seeded at start from what the database last
  stored (demands and open rejections), so a supervisor restarting a broken consumer does not get
  a fresh allowance each time; and only a batch that itself has rejections can trip the guard, so
  a fixed consumer is never stopped by that history.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from collections import Counter, deque
from collections.abc import Callable, Iterable

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from django.conf import settings
from django.db import close_old_connections, connections, transaction

from .. import live
from ..kafka import broker_outage, client_config, ensure_topics, is_authentication_error, make_producer
from ..models import Demand, RejectedMessage
from ..monitoring.heartbeat import consumer_heartbeat
from .parse import IncomingMessage, ParsedBatch, current_rules, parse_batch, record_from
from .persist import BatchResult, forget_session_state, persist_batch

logger = logging.getLogger(__name__)


def parse_messages(messages: list[Message], rules: list) -> ParsedBatch:
    """Kafka messages → a ParsedBatch (in the read-ahead worker: the messages are plain values by
    now, detached from the consumer)."""
    return parse_batch([record_from(message) for message in messages], rules)


def _partition_list(partitions: Iterable[tuple[str, int]]) -> str:
    """topic[0,1,2] other[5] for (topic, partition) pairs: what the rebalance log lines name (the
    benchmark reads them too)."""
    by_topic: dict[str, list[int]] = {}
    for topic, partition in partitions:
        by_topic.setdefault(topic, []).append(partition)
    return " ".join(f"{topic}[{','.join(map(str, sorted(numbers)))}]" for topic, numbers in sorted(by_topic.items()))


class ConsumerFailed(RuntimeError):
    """Too many consecutive failures: the process should exit non-zero and be restarted."""


class RejectRatioExceeded(ConsumerFailed):
    """Too many recent records rejected: probably broken code or schema, not bad input. Not retried."""


class ConsumeLoop:
    def __init__(
        self,
        *,
        topics: list[str] | None = None,
        group: str | None = None,
        batch_size: int | None = None,
        batch_timeout: float | None = None,
        max_failures: int | None = None,
        dlq_topic: str | None = None,
        consumer_overrides: dict | None = None,
        on_batch: Callable[[BatchResult], None] | None = None,
        broadcast: bool = True,
        stats_interval: float = 30.0,
        consumer_factory: Callable[[dict], Consumer] = Consumer,
        producer_factory: Callable[[], Producer] = make_producer,
        create_topics: bool = True,
        async_commit: bool | None = None,
        max_reject_ratio: float | None = None,
        reject_window: int | None = None,
    ):
        self.topics = topics or list(settings.KAFKA_TOPICS)
        self.group = group or settings.KAFKA_CONSUMER_GROUP
        self.batch_size = batch_size or settings.CONSUMER_BATCH_SIZE
        self.batch_timeout = batch_timeout if batch_timeout is not None else settings.CONSUMER_BATCH_TIMEOUT
        self.max_failures = max_failures or settings.CONSUMER_MAX_FAILURES
        self.dlq_topic = dlq_topic if dlq_topic is not None else settings.KAFKA_DLQ_TOPIC
        self.consumer_overrides = consumer_overrides or {}
        self.on_batch = on_batch
        self.broadcast = broadcast
        self.stats_interval = stats_interval
        self.consumer_factory = consumer_factory
        self.producer_factory = producer_factory
        self.create_topics = create_topics
        self.async_commit = settings.CONSUMER_ASYNC_COMMIT if async_commit is None else async_commit
        self._uncommitted: dict[tuple[str, int], int] = {}  # offsets sent asynchronously, not yet confirmed
        self._owned: set[tuple[str, int]] = set()  # (topic, partition) assigned to this consumer now
        self._connection_checked_at = float("-inf")
        self.idle_timeout = 0.2  # one wait for a first record (stop requests and heartbeats in between)
        self.max_reject_ratio = max_reject_ratio if max_reject_ratio is not None else settings.CONSUMER_MAX_REJECT_RATIO
        self.reject_window = reject_window if reject_window is not None else settings.CONSUMER_REJECT_WINDOW
        self._recent_rejects: deque[bool] = deque(maxlen=max(self.reject_window, 1))
        self._stop = threading.Event()
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self.totals = {"batches": 0, "created": 0, "duplicates": 0, "rejected": 0}

    # -- control ---------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to finish its current batch, commit and exit. Safe from signal handlers."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _sleep(self, seconds: float) -> None:
        """Back-off that a stop request cuts short. Not Event.wait(): that holds the event's lock
        for a moment, and SIGTERM's handler (stop() → Event.set(), same thread) landing in that
        moment would wait for the lock forever. Short sleeps and a lock-free is_set() cannot."""
        deadline = time.monotonic() + seconds
        while not self.stopping:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(remaining, 0.1))

    # -- the loop --------------------------------------------------------------------------------
    def run(self) -> None:
        if self.create_topics:
            ensure_topics([*self.topics, self.dlq_topic] if self.dlq_topic else self.topics)
        config = client_config(
            **{
                "group.id": self.group,
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
                "on_commit": self._on_commit,
                **self.consumer_overrides,
            }
        )
        self._consumer = self.consumer_factory(config)
        self._producer = self.producer_factory() if self.dlq_topic else None
        self._consumer.subscribe(self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost)
        self._seed_reject_window()
        logger.info(
            "consuming %s as group %s (batch %d / %.2fs)", ",".join(self.topics), self.group, self.batch_size, self.batch_timeout
        )
        last_stats = time.monotonic()
        window = {"created": 0, "rejected": 0, "duplicates": 0}
        heartbeat = consumer_heartbeat(self)  # monitoring: liveness row and /metrics
        # Read-ahead: while the database stores one batch, a worker thread parses the records that
        # have arrived meanwhile and applies the rules (the worker holds the GIL while it works; a
        # wait on the database does not). The rules are read here, in the loop's thread. Only
        # this thread touches the Kafka consumer, and nothing read ahead is committed before it is
        # stored. A batch read ahead when a stop comes is dropped, uncommitted: Kafka re-delivers it.
        parser = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parse")
        # The parser holds the GIL while it works; each database reply the loop receives meanwhile
        # waits for the GIL up to the switch interval (5 ms by default), which ate most of the
        # overlap. 0.5 ms lets the loop get on with the batch after each round trip.
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))
        ahead: tuple[list[Message], Future | None] | None = None  # read ahead, and its parsing job
        try:
            while not self.stopping:
                heartbeat.beat()
                if ahead is None:  # nothing read ahead: wait for records, parse them here (no hand-off)
                    messages = self._read(wait=True)
                    if not messages:
                        continue
                    ahead = (messages, None)
                batch = self._parsed(*ahead)
                messages = self._read(wait=False)
                ahead = (messages, parser.submit(parse_messages, messages, current_rules())) if messages else None
                result = self._handle_with_retries(batch)
                if result is None:
                    break  # stop requested while retrying: nothing committed, Kafka re-delivers
                window["created"] += len(result.created)
                window["rejected"] += len(result.rejected)
                window["duplicates"] += result.duplicates
                now = time.monotonic()
                if now - last_stats >= self.stats_interval:
                    elapsed = now - last_stats
                    logger.info(
                        "throughput: %.1f demands/s stored, %d rejected, %d duplicates in the last %.0fs",
                        window["created"] / elapsed, window["rejected"], window["duplicates"], elapsed,
                    )
                    window = dict.fromkeys(window, 0)
                    last_stats = now
        finally:
            heartbeat.stop()
            parser.shutdown(wait=True, cancel_futures=True)
            self._close()

    @staticmethod
    def _parsed(messages: list[Message], parsing: Future | None) -> ParsedBatch | list[IncomingMessage]:
        """The messages parsed (by the worker when `parsing` is its job, else here). If parsing
        fails, the bare records: they are parsed again under the retries, which report it."""
        try:
            return parsing.result() if parsing is not None else parse_messages(messages, current_rules())
        except Exception:
            return [record_from(message) for message in messages]

    def _read(self, *, wait: bool) -> list[Message]:
        """Messages for a batch. wait=True: up to `idle_timeout` for a first record, then what else
        has arrived, waiting at most `batch_timeout` for more — so a lone record is stored at once,
        and a backlog still comes in full batches. wait=False: only what has arrived already."""
        if wait:
            messages = self._consumer.consume(1, self.idle_timeout)
            if messages and self.batch_size > 1:
                messages += self._consumer.consume(self.batch_size - 1, self.batch_timeout)
        else:
            messages = self._consumer.consume(self.batch_size, 0)
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

    def _handle_with_retries(self, batch: ParsedBatch | list[IncomingMessage]) -> BatchResult | None:
        failures = 0
        records = batch.records if isinstance(batch, ParsedBatch) else batch
        while True:
            try:
                return self._handle(batch)
            except RejectRatioExceeded:
                raise  # deterministic: the same batch would be rejected the same way again
            except Exception as exc:  # database down, broker unreachable, constraint race…
                failures += 1
                if failures >= self.max_failures:
                    raise ConsumerFailed(
                        f"batch of {len(records)} records failed {failures} times in a row; last error: {exc!r}"
                    ) from exc
                delay = min(0.5 * 2 ** (failures - 1), 30.0)
                logger.warning(
                    "batch failed (%d/%d), retrying in %.1fs without committing: %r", failures, self.max_failures, delay, exc
                )
                self._check_connection(force=True)
                forget_session_state()  # a group deleted by another process fails its batch once
                self._sleep(delay)
                if self.stopping:
                    return None

    def _handle(self, batch: ParsedBatch | list[IncomingMessage]) -> BatchResult:
        parsed = batch if isinstance(batch, ParsedBatch) else parse_batch(batch)
        records = parsed.records
        self._check_connection()
        with transaction.atomic():  # so the guard can undo the batch's writes
            result = persist_batch(parsed)
            outcomes = self._check_reject_ratio(records, result)
        if result.rejected and self._producer is not None:
            self._dead_letter(result)
        if self.broadcast and result.created:
            try:
                live.broadcast_demands_created(result.created)
                live.broadcast_notifications(result.notification_ids)  # rule assignments
            except Exception:  # browsers missing an update must not stop ingestion; they catch up
                logger.exception("broadcast of %d new demands failed", len(result.created))
        self._commit(records)
        self._recent_rejects.extend(outcomes)
        self.totals["batches"] += 1
        self.totals["created"] += len(result.created)
        self.totals["duplicates"] += result.duplicates
        self.totals["rejected"] += len(result.rejected)
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

    def _seed_reject_window(self) -> None:
        """Start the window from the last outcomes the database holds, oldest first."""
        if self.reject_window < 1 or self.max_reject_ratio >= 1:
            return
        try:
            demands = Demand.objects.order_by("-id").values_list("received_at", flat=True)[: self.reject_window]
            rejected = (
                RejectedMessage.objects.filter(status=RejectedMessage.Status.OPEN)
                .order_by("-id").values_list("received_at", flat=True)[: self.reject_window]
            )
            history = sorted([(at, False) for at in demands] + [(at, True) for at in rejected])
        except Exception:  # database down at start: the batch loop retries it; start with no history
            logger.exception("could not read recent outcomes for the reject-ratio guard")
            return
        self._recent_rejects.extend(is_rejected for _at, is_rejected in history[-self.reject_window :])

    def _check_reject_ratio(self, records: list[IncomingMessage], result: BatchResult) -> list[bool]:
        """Raise RejectRatioExceeded (inside the batch's transaction) if the window is too bad.

        Judged only once the window holds `reject_window` records, so a few bad messages at start
        never stop the consumer. Returns this batch's outcomes, recorded once the batch commits.
        """
        rejected_ids = {id(record) for record, _reason in result.rejected}
        outcomes = [id(record) in rejected_ids for record in records]
        if self.reject_window < 1 or self.max_reject_ratio >= 1:
            return outcomes
        window = [*self._recent_rejects, *outcomes][-self.reject_window :]
        rejected = sum(window)
        if any(outcomes) and len(window) == self.reject_window and rejected / len(window) > self.max_reject_ratio:
            reasons = Counter(reason.split(":")[0] for _record, reason in result.rejected).most_common(3)
            raise RejectRatioExceeded(
                f"{rejected} of the last {len(window)} records were rejected ({rejected / len(window):.0%}, limit "
                f"{self.max_reject_ratio:.0%}); stopped before storing or committing this batch so that a code or "
                f"schema error does not dead-letter the stream. Most common reasons in this batch: "
                + "; ".join(f"{reason} (×{count})" for reason, count in reasons)
                + ". Fix the cause and restart (Kafka re-delivers from the last commit), or raise "
                "CONSUMER_MAX_REJECT_RATIO if this share of bad input is expected."
            )
        return outcomes

    def _dead_letter(self, result: BatchResult) -> None:
        """Copy rejected records to the DLQ with the reason in headers; flushed before the commit."""
        failed: list[KafkaError] = []

        def on_delivery(error, _message):
            if error is not None:
                failed.append(error)

        for record, reason in result.rejected:
            headers = [
                ("dlq.reason", reason.encode()),
                ("dlq.topic", record.topic.encode()),
                ("dlq.partition", str(record.partition).encode()),
                ("dlq.offset", str(record.offset).encode()),
            ]
            self._producer.produce(self.dlq_topic, value=record.value, key=record.key, headers=headers, on_delivery=on_delivery)
        remaining = self._producer.flush(30)
        if remaining or failed:
            raise KafkaException(f"dead-letter delivery failed ({remaining} undelivered, errors: {failed[:3]})")

    def _commit(self, records: list[IncomingMessage]) -> None:
        next_offsets: dict[tuple[str, int], int] = {}
        for record in records:
            key = (record.topic, record.partition)
            next_offsets[key] = max(next_offsets.get(key, -1), record.offset + 1)
        offsets = [TopicPartition(topic, partition, offset) for (topic, partition), offset in next_offsets.items()]
        try:
            # Asynchronous: the commit is sent after the database commit (the order that matters)
            # and the loop does not wait ~5 ms for the group coordinator on every batch — about
            # 1.8x throughput (bench/README.md). A commit that fails only means re-delivery, which
            # idempotent writes absorb; the last offsets are committed synchronously on close.
            self._uncommitted.update(next_offsets)
            self._consumer.commit(offsets=offsets, asynchronous=self.async_commit)
            if not self.async_commit:
                self._uncommitted.clear()
        except KafkaException as exc:
            code = exc.args[0].code() if exc.args and isinstance(exc.args[0], KafkaError) else None
            if code in (KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION, KafkaError.UNKNOWN_MEMBER_ID,
                        KafkaError._NO_OFFSET):
                # Partitions moved during the batch: the new owner re-reads it, and the idempotent
                # writes make that harmless. Retrying the commit here would not help.
                logger.info("offset commit skipped after a rebalance: %s", exc)
                return
            raise

    # -- rebalances (called from consume(), on the loop's thread) ------------------------------------
    def _on_assign(self, _consumer, partitions: list[TopicPartition]) -> None:
        if not partitions:  # a cooperative rebalance that moved nothing here
            return
        pairs = [(p.topic, p.partition) for p in partitions]
        self._owned.update(pairs)
        logger.info("partitions assigned: %s; consuming %s", _partition_list(pairs), self._owned_text())

    def _on_revoke(self, _consumer, partitions: list[TopicPartition]) -> None:
        # Commit what is stored now, so the next owner does not read it again (the asynchronous
        # commits still in flight would fail with the old generation).
        if not partitions:
            return
        self._commit_pending_sync()
        pairs = [(p.topic, p.partition) for p in partitions]
        self._owned.difference_update(pairs)
        logger.info("partitions revoked: %s; consuming %s", _partition_list(pairs), self._owned_text())

    def _on_lost(self, _consumer, partitions: list[TopicPartition]) -> None:
        pairs = [(p.topic, p.partition) for p in partitions]
        self._owned.difference_update(pairs)
        logger.warning("partitions lost (session timed out?): %s; their records since the last commit will be "
                       "read again by their next owner; consuming %s", _partition_list(pairs), self._owned_text())

    def _owned_text(self) -> str:
        return _partition_list(self._owned) or "nothing"

    def _on_commit(self, error, partitions) -> None:
        """librdkafka's report of an asynchronous commit (called from consume())."""
        if error is not None:
            logger.warning("offset commit failed (these records will be read again, harmlessly): %s", error)
            return
        broker_outage.ok()  # the coordinator answered: the broker is back, if it was gone
        for partition in partitions or ():
            if partition.error is None and self._uncommitted.get((partition.topic, partition.partition)) == partition.offset:
                del self._uncommitted[(partition.topic, partition.partition)]

    def _commit_pending_sync(self) -> None:
        """Before leaving the group: make sure the last batches' offsets are committed."""
        if not self._uncommitted or self._consumer is None:
            return
        offsets = [TopicPartition(topic, partition, offset) for (topic, partition), offset in self._uncommitted.items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
            self._uncommitted.clear()
        except KafkaException as exc:  # rebalanced away or broker gone: the next owner re-reads, harmlessly
            logger.info("final offset commit skipped: %s", exc)

    def _close(self) -> None:
        if self._producer is not None:
            self._producer.flush(10)
        if self._consumer is not None:
            self._commit_pending_sync()
            try:
                self._consumer.close()  # leave the group now, not after session.timeout.ms
            except RuntimeError:
                pass
        connections.close_all()  # this thread's connections; a thread's are not closed for it
        logger.info(
            "consumer closed: %(batches)d batches, %(created)d demands stored, %(duplicates)d duplicates, "
            "%(rejected)d rejected",
            self.totals,
        )
