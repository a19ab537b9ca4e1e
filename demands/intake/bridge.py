"""Bridge from another broker into the demand topic: read → produce to Kafka → ack the source.

Kafka stays the one log the product consumes; a source that is not Kafka (RabbitMQ now, see
`amqp.py`) reaches it through a `Bridge`. This module is source-independent: it holds the Kafka
side and the confirm-then-ack bookkeeping; a source module holds only its client's specifics
(connect, receive, ack/nack, queue depth) behind the small `Source` interface below.

How the process behaves in production:

- Each message from the source is produced to the demand topic unchanged (keyed `source:id` when
  the body is a JSON object with both fields, unkeyed otherwise: the consumer then rejects it with
  its reason), with headers saying where it came from. The producer is `demands.kafka.make_producer`
  with acks=all (all in-sync replicas) and idempotence, so librdkafka's own retries neither lose
  nor duplicate a record.
- A source message is acked only after Kafka's delivery report for its record said "stored".
  Reports come back out of order, while an ack of tag T with `multiple` covers every earlier tag
  of its channel: `AckTracker` (relay.py) acks each run of confirmed tags with one multiple-ack,
  and a tag only once every earlier one is resolved. A failed delivery is never acked: it goes
  back to the source with requeue, and the bridge backs off.
- Batching: the source's prefetch (`AMQP_PREFETCH` per queue) bounds what is in flight; Kafka
  batches by `linger.ms`; acks go out once per loop turn, for everything confirmed in it.
- A crash (kill -9, OOM) loses nothing: messages not yet acked are re-delivered by the source to
  the next bridge. Records already in Kafka are then produced again — at-least-once into Kafka —
  and the consumer stores each (source, id) once, so storage stays exactly-once.
- A lost source broker: the bridge drops its channel state (the broker re-delivers what was not
  acked), and reconnects with capped exponential back-off (0.5 s doubling to 30 s). A lost Kafka
  broker: librdkafka retries by itself while records wait in flight (the source stops delivering
  once prefetch is reached); records that time out are nacked and the bridge backs off the same
  way. `max_failures` consecutive failed attempts on either side (no successful connect, or no
  successful delivery, in between) raise BridgeFailed: the process exits non-zero for its
  supervisor.
- `stop()` (SIGTERM/SIGINT in the command): stop taking messages from the source, flush the
  records in flight, ack the confirmed ones, close the source (it re-delivers the rest), return.
- Logging: one line per connection state change (connected, lost, back again — not one per failed
  attempt), and a throughput line every `stats_interval` seconds. `bridge_stats()` returns the
  counters of every bridge running in this process; `heartbeat` (bridge_amqp passes
  monitoring's BridgeHeartbeatWriter) is handed them every few seconds and once at the end.

A second source kind is one module beside `amqp.py`, not a fork of this one: a RocketMQ source
would implement `Source` (relay.py) with its client — `stream` one message queue of its consumer,
`tag` the queue offset, `ack(multiple=True)` committing the consume offset up to it, `nack()`
sending the message back for a retry, `depth()` from the consumer group's stats — plus a command
of a few lines like bridge_amqp.py; every Kafka-side promise here comes with it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from functools import partial

from confluent_kafka import KafkaError, KafkaException, Producer

from demands.kafka import ensure_topics, make_producer
from demands.pipeline.retry import sleep_unless_stopped

logger = logging.getLogger(__name__)

from .relay import (  # noqa: F401  (re-exported: the bridge's public names, wherever they live)
    StatsFile, bridge_stats, backoff, SourceMessage, SourceUnavailable, Source, BridgeFailed, AckTracker,
    record_key, header_value, BridgeStats, BACKOFF_START, BACKOFF_CAP, QUEUE_COUNTERS, running_bridges, BridgeReporting)


# -- the bridge ----------------------------------------------------------------------------------
class Bridge(BridgeReporting):
    """Forwards a `Source` into a Kafka topic, acking the source only after Kafka confirmed.

    Single-threaded: the source client (pika is not thread-safe) and the producer's delivery
    reports (run inside producer.poll()/flush() on the calling thread) are both served by `run()`.
    """

    def __init__(
        self,
        source: Source,
        *,
        topic: str,
        max_failures: int = 10,
        stats_interval: float = 30.0,
        idle_timeout: float = 0.1,
        drain_timeout: float = 30.0,
        producer_config: dict | None = None,
        producer_factory: Callable[..., Producer] = make_producer,
        create_topic: bool = True,
        stats_file: str | None = None,
        heartbeat: Callable[..., None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
    ):
        self.source = source
        self.topic = topic
        self.max_failures = max(1, max_failures)
        self.stats_interval = stats_interval
        self.idle_timeout = idle_timeout
        self.drain_timeout = drain_timeout
        self.producer_config = {
            "acks": "all",
            # A record librdkafka could not deliver for this long is reported failed (and nacked)
            # instead of waiting the default 5 minutes: an outage shows, and backs off, sooner.
            "message.timeout.ms": 60000,
            **(producer_config or {}),
        }
        self.producer_factory = producer_factory
        self.create_topic = create_topic
        self.stats_file = StatsFile(stats_file) if stats_file else None
        self.heartbeat, self._next_beat = heartbeat, float("-inf")  # heartbeat(snapshot, stopped=bool), every 5 s
        self.clock = clock
        self._sleep_fn = sleep
        self.tracker = AckTracker()
        self.stats = BridgeStats(kind=source.kind, queues=source.queues, topic=topic)
        self._waiting: deque[SourceMessage] = deque()  # received, not yet produced
        self._in_flight = 0  # produced, no delivery report yet (current stream or not)
        self._paused_until = 0.0  # Kafka back-off: no producing before this
        self._stop = threading.Event()
        self._producer: Producer | None = None
        self._stream: Hashable | None = None
        self._last_stats = clock()
        self._window = {"forwarded": 0, "acked": 0, "failed": 0}

    # -- control ---------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop consuming, finish what is in flight, ack it, return from run(). Signal-safe."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _sleep(self, seconds: float) -> None:
        """Back-off that a stop cuts short (retry.sleep_unless_stopped, as ConsumeLoop's)."""
        if self._sleep_fn is not None:
            self._sleep_fn(seconds)
        else:
            sleep_unless_stopped(seconds, lambda: self.stopping)

    # -- the loop --------------------------------------------------------------------------------
    def run(self) -> None:
        self.open()
        try:
            while not self.stopping:
                self.step()
            self.drain()
        finally:
            self.close()

    def open(self) -> None:
        """Make the producer (and the topic if missing). Done by run(); once is enough."""
        if self._producer is not None:
            return
        if self.create_topic:
            try:
                ensure_topics([self.topic], timeout=10)  # not the minute a consumer waits: the source is read meanwhile
            except Exception as exc:  # Kafka down at start: records wait in the producer meanwhile
                logger.warning("could not check/create topic %s (%s); producing anyway", self.topic, exc)
        self._producer = self.producer_factory(**{**self.producer_config, "error_cb": self._on_kafka_error})
        running_bridges.add(self)
        logger.info("bridge %s → kafka topic %s (acks=all); %s", self.source.kind, self.topic, self.source.describe())

    def step(self) -> None:
        """One turn: connect if needed, read, produce, collect delivery reports, ack."""
        if not self.source.connected:
            self._connect()
            return
        now = self.clock()
        paused = now < self._paused_until
        busy = bool(self._waiting) and not paused
        try:
            # Block on the source only when there is nothing else to do; with records in flight,
            # alternate quick source reads with short waits for delivery reports.
            timeout = 0.0 if busy or self._in_flight else (min(self.idle_timeout, self._paused_until - now) if paused else self.idle_timeout)
            self._take(self.source.poll(max(timeout, 0.0)))
            if not paused and not self.stopping:  # a stop (signal) during the poll: produce no more
                self._produce_waiting()
            self._producer.poll(0.01 if self._in_flight and not self._waiting else 0)  # returns at the first report
            self._settle()
        except SourceUnavailable as exc:
            self._source_lost(exc)
        self._report()

    def _take(self, messages: list[SourceMessage]) -> None:
        if not messages:
            return
        queues = self.stats.queues
        for message in messages:
            (queues.get(message.queue) or self.stats.queue(message.queue))["received"] += 1
        self._waiting.extend(messages)
        self.stats.waiting = len(self._waiting)

    def _produce_waiting(self) -> None:
        producer = self._producer
        while self._waiting:
            message = self._waiting[0]
            if message.stream != self._stream:  # from a connection since lost: re-delivered anyway
                self._waiting.popleft()
                continue
            try:
                producer.produce(
                    self.topic,
                    value=message.body,
                    key=record_key(message.body),
                    headers=message.headers,
                    on_delivery=partial(self._on_delivery, message.stream, message.tag, message.queue),
                )
            except BufferError:  # librdkafka's local queue is full: let reports drain first
                producer.poll(0.05)
                break
            except KafkaException as exc:  # e.g. a record over message.max.bytes: never ack it
                logger.error("kafka refused a record from %s (delivery tag %s): %s", message.queue, message.tag, exc)
                self._waiting.popleft()
                self.tracker.add(message.stream, message.tag, message.queue)
                self.tracker.resolve(message.stream, message.tag, False)
                self.stats.queue(message.queue)["failed"] += 1
                self._kafka_failed(str(exc))
                continue
            self._waiting.popleft()
            self.tracker.add(message.stream, message.tag, message.queue)
            self._in_flight += 1
        self.stats.waiting = len(self._waiting)
        self.stats.in_flight = self._in_flight

    def _on_delivery(self, stream, tag, queue, error, _message) -> None:
        """librdkafka's delivery report (inside producer.poll()/flush(), on this thread)."""
        self._in_flight -= 1
        ok = error is None
        counters = self.stats.queues.get(queue) or self.stats.queue(queue)
        if ok:
            counters["forwarded"] += 1
            self._window["forwarded"] += 1
            self.stats.kafka_failures = 0
            if self.stats.kafka_state != "up":
                if self.stats.kafka_state == "down":
                    logger.info("kafka: delivering again")
                self.stats.kafka_state = "up"
        else:
            counters["failed"] += 1
            self._window["failed"] += 1
            self._kafka_failed(str(error))
        if not self.tracker.resolve(stream, tag, ok) and ok:
            self.stats.orphaned += 1

    def _kafka_failed(self, error: str) -> None:
        """A record was not delivered: back off producing. All failures within one back-off count
        as one attempt (a whole prefetch of records times out together)."""
        self.stats.last_error = f"kafka: {error}"
        now = self.clock()
        if now < self._paused_until:
            return
        self.stats.kafka_failures += 1
        if self.stats.kafka_state != "down":
            logger.warning("kafka: delivery failed (%s); nacking, backing off", error)
        self.stats.kafka_state = "down"
        if self.stats.kafka_failures >= self.max_failures:
            raise BridgeFailed(f"kafka delivery failed {self.stats.kafka_failures} times in a row; last error: {error}")
        self._paused_until = now + backoff(self.stats.kafka_failures)

    def _on_kafka_error(self, error: KafkaError) -> None:
        """librdkafka's error callback: connection state, not per record. Logged on change only."""
        if error.fatal():
            self.stats.last_error = f"kafka: {error}"
            logger.error("kafka: fatal producer error: %s", error)
            return
        if error.code() == KafkaError._ALL_BROKERS_DOWN and self.stats.kafka_state != "down":
            self.stats.kafka_state = "down"
            self.stats.last_error = f"kafka: {error}"
            logger.warning("kafka: all brokers down (%s); records wait in flight while librdkafka retries", error)

    def _settle(self) -> None:
        for action, stream, tag, queues in self.tracker.settle():
            if action == "ack":
                self.stats.last_ack_at = time.time()
                self.source.ack(stream, tag, multiple=len(queues) > 1)
                for queue in queues:
                    self.stats.queue(queue)["acked"] += 1
                self._window["acked"] += len(queues)
            else:
                self.source.nack(stream, tag)
                self.stats.queue(queues[0])["nacked"] += 1

    # -- the source connection -------------------------------------------------------------------
    def _connect(self) -> None:
        try:
            self.source.connect()
        except SourceUnavailable as exc:
            self.stats.source_failures += 1
            self.stats.last_error = f"{self.source.kind}: {exc}"
            if self.stats.source_state != "down":
                logger.warning("%s: cannot connect (%s); retrying with back-off", self.source.kind, exc)
            self.stats.source_state = "down"
            if self.stats.source_failures >= self.max_failures:
                raise BridgeFailed(
                    f"{self.source.kind}: {self.stats.source_failures} connection attempts failed in a row; last error: {exc}"
                ) from exc
            self._sleep(backoff(self.stats.source_failures))
            return
        attempts = self.stats.source_failures
        if self.stats.source_state == "connecting":
            logger.info("%s: connected, consuming %s", self.source.kind, ",".join(self.source.queues))
        else:
            self.stats.reconnects += 1
            logger.info("%s: reconnected after %d failed attempt(s), consuming %s", self.source.kind, attempts,
                        ",".join(self.source.queues))
        self.stats.source_state = "connected"
        self.stats.source_failures = 0
        self._stream = getattr(self.source, "stream", None)
        # Reports still due for the old connection's records are orphans now: they are re-delivered.
        self.tracker.forget_all_but(self._stream)

    def _source_lost(self, exc: Exception) -> None:
        self.stats.last_error = f"{self.source.kind}: {exc}"
        open_tags = self.tracker.forget_all_but(None)
        dropped = len(self._waiting)
        self._waiting.clear()
        self.stats.waiting = 0
        logger.warning("%s: connection lost (%s); %d unacked message(s) will be re-delivered; reconnecting",
                       self.source.kind, exc, open_tags + dropped)
        self.stats.source_state = "down"
        self.stats.source_failures += 1
        self._stream = None
        try:
            self.source.close()
        except Exception:
            pass
        if self.stats.source_failures >= self.max_failures:
            raise BridgeFailed(f"{self.source.kind}: connection lost {self.stats.source_failures} times in a row: {exc}")
        self._sleep(backoff(self.stats.source_failures))

    # -- stopping --------------------------------------------------------------------------------
    def drain(self) -> None:
        """Stop consuming, wait for the delivery reports of what is in flight, ack those confirmed.
        Messages received but not produced stay unacked: the source re-delivers them on close."""
        if self._producer is None:
            return
        if self.source.connected:
            try:
                self.source.stop_consuming()
            except SourceUnavailable:
                pass
        dropped = len(self._waiting)
        self._waiting.clear()
        deadline = self.clock() + self.drain_timeout
        while self._in_flight and self.clock() < deadline:
            self._producer.flush(min(1.0, max(deadline - self.clock(), 0.0)))
            try:
                if self.source.connected:
                    self._settle()
                    self.source.poll(0)  # heartbeats, and the acks go out
            except SourceUnavailable as exc:
                self._source_lost_quietly(exc)
        try:
            if self.source.connected:
                self._settle()
        except SourceUnavailable as exc:
            self._source_lost_quietly(exc)
        logger.info("%s: stopped; %d record(s) still unconfirmed and %d not produced are left to re-delivery",
                    self.source.kind, self._in_flight, dropped)

    def _source_lost_quietly(self, exc: Exception) -> None:
        self.tracker.forget_all_but(None)
        self.stats.last_error = f"{self.source.kind}: {exc}"
        logger.warning("%s: connection lost while stopping (%s); unacked messages will be re-delivered", self.source.kind, exc)

    def close(self) -> None:
        try:
            self.source.close()
        except Exception:
            logger.exception("closing the %s connection failed", self.source.kind)
        if self._producer is not None:
            self._producer.flush(5)  # orphaned records (their source is gone): best effort
        self.stats.source_state = "stopped"
        if self.stats_file is not None:
            self.stats_file.write(self.stats.snapshot(), force=True)
        self._beat(stopped=True)
        running_bridges.discard(self)
        totals = {counter: self.stats.total(counter) for counter in QUEUE_COUNTERS}
        logger.info("bridge closed: %(received)d received, %(forwarded)d forwarded, %(acked)d acked, "
                    "%(failed)d failed, %(nacked)d nacked", totals)
