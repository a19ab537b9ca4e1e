"""Kafka clients for every process: configuration, topics, producers, one `deliver`.

A leaf: it imports nothing of the project, so the consume loop (`pipeline`), the sources without
Kafka clients (`intake`), monitoring and the commands all build their clients here, the same way:
`client_config` (settings' librdkafka properties, `KAFKA_CONFIG_*`), `make_producer` (idempotent),
`admin_client`, `ensure_topics`, `produce_demand` (fire and forget, for bulk producers) and
`deliver` (produce and wait until the broker confirmed each record, for callers that answer
someone: HTTP ingest, dead-letter replay).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from django.conf import settings

logger = logging.getLogger(__name__)


class OutageLog:
    """One log line when something goes down, a summary a minute while it stays down, one when it
    is back — instead of a line per failed attempt (librdkafka retries a refused connection every
    few tens of milliseconds at first: ~20 ERROR lines a second while a broker restarts).

    `failed(what)` on each failure, `ok()` on any proof that it works again. Thread-safe.
    """

    def __init__(self, logger_: logging.Logger, subject: str, *, summary_every: float = 60.0,
                 clock=time.monotonic):
        self.logger, self.subject, self.summary_every, self.clock = logger_, subject, summary_every, clock
        self._lock = threading.Lock()
        self.down_since: float | None = None
        self._failures = 0
        self._last_summary = 0.0
        self._last_reason = ""

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def failed(self, reason: str) -> None:
        now = self.clock()
        with self._lock:
            self._failures += 1
            self._last_reason = reason
            if self.down_since is None:
                self.down_since = self._last_summary = now
                self.logger.warning("%s: unreachable (%s); retrying, with a summary every %.0fs while it lasts",
                                    self.subject, reason, self.summary_every)
            elif now - self._last_summary >= self.summary_every:
                self._last_summary = now
                self.logger.warning("%s: still unreachable after %.0fs (%d failures so far; last: %s)",
                                    self.subject, now - self.down_since, self._failures, reason)

    def ok(self) -> None:
        if self.down_since is None:  # the common case, without the lock
            return
        now = self.clock()
        with self._lock:
            if self.down_since is None:
                return
            self.logger.info("%s: reachable again after %.0fs (%d failures)", self.subject, now - self.down_since,
                             self._failures)
            self.down_since, self._failures = None, 0


# librdkafka's facilities and phrases for "cannot talk to a broker" (FAIL: connect/receive failures,
# "N/N brokers are down"); everything else it logs passes through at its own level.
_CONNECTION_FACILITIES = {"FAIL", "BROKERFAIL"}
_CONNECTION_PHRASES = ("brokers are down", "Connection refused", "Connect to ", "Disconnected", "timed out")


class ClientLog:
    """The `logger` librdkafka's log lines go to (confluent-kafka calls `.log(level, fmt, *args)`):
    connection trouble becomes one `OutageLog` per process; the rest goes to the `demands.kafka.client`
    logger unchanged."""

    def __init__(self, logger_: logging.Logger, outage: OutageLog):
        self.logger, self.outage = logger_, outage
        self.authentication_failure: tuple[float, str] | None = None  # (monotonic time, librdkafka's words)

    def log(self, level, fmt, *args):
        facility = args[0] if args else ""
        message = args[-1] if args else fmt
        if "SASL authentication error" in str(message) or "Authentication failed" in str(message):
            self.authentication_failure = (time.monotonic(), str(message)[:500])
        if facility in _CONNECTION_FACILITIES or (level >= logging.WARNING and any(p in str(message) for p in _CONNECTION_PHRASES)):
            self.outage.failed(str(message)[:300])
            return
        self.logger.log(level, fmt, *args)

    def isEnabledFor(self, level) -> bool:  # logging.Logger's interface, for anything that asks
        return self.logger.isEnabledFor(level)


client_logger = logging.getLogger("demands.kafka.client")
broker_outage = OutageLog(client_logger, "Kafka")  # ok() is called wherever a client proves the broker works
client_log = ClientLog(client_logger, broker_outage)


def client_config(**overrides) -> dict:
    """Settings' librdkafka properties (bootstrap servers, security…) plus per-client overrides."""
    # Small requests (a fetch, a lone record) go out at once instead of waiting on Nagle's algorithm
    # for an ACK the broker may delay: live latency is what this product is for.
    config = {"socket.nagle.disable": True, "logger": client_log, **settings.KAFKA_CLIENT_CONFIG}
    config.update(overrides)
    return config


def cluster_size(admin: AdminClient | None = None, *, timeout: float = 15.0) -> int:
    """How many brokers the cluster has now (metadata)."""
    return len((admin or admin_client()).list_topics(timeout=timeout).brokers)


def topic_settings(brokers: int) -> tuple[int, dict]:
    """(replication factor, topic configs) for topics this project creates on a cluster of `brokers`:
    three replicas where there are three brokers, and writes acknowledged by two of them (acks=all
    with min.insync.replicas=2), so one broker can be lost or restarted without losing an
    acknowledged record or refusing writes. One broker: one replica, and min ISR 1."""
    replicas = max(1, min(3, brokers))
    return replicas, {"min.insync.replicas": str(2 if replicas >= 2 else 1)}


AUTHENTICATION_ERRORS = {KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED,
                         KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED,
                         KafkaError.GROUP_AUTHORIZATION_FAILED}


def is_authentication_error(error: KafkaError | None) -> bool:
    """Wrong credentials or missing rights: retrying cannot help, so callers fail at once, with the reason."""
    return error is not None and (error.code() in AUTHENTICATION_ERRORS or "SASL authentication" in error.str())


def cluster_metadata(admin: AdminClient, *, timeout: float = 60.0):
    """The cluster's metadata, waiting up to `timeout` for a broker that is down or restarting (a
    process that starts during a broker restart waits it out instead of exiting); wrong credentials
    fail at once (KafkaException with the broker's reason)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        asked_at = time.monotonic()
        try:
            return admin.list_topics(timeout=min(max(left, 1.0), 5.0))  # short asks: a refused login shows between them
        except KafkaException as exc:
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            admin.poll(0.2)  # librdkafka's log lines (served on poll) say why: a refused login among them
            refused = client_log.authentication_failure
            if refused is not None and refused[0] >= asked_at - 1:
                raise KafkaException(KafkaError(KafkaError._AUTHENTICATION, refused[1])) from None
            if is_authentication_error(error) or time.monotonic() >= deadline:
                raise
            broker_outage.failed(str(exc))
            time.sleep(min(1.0, max(left, 0)))


def ensure_topics(topics: Iterable[str], *, partitions: int | None = None, timeout: float = 60.0) -> None:
    """Create the topics that do not exist yet (demand topics and the DLQ); existing ones are untouched."""
    admin = admin_client()
    metadata = cluster_metadata(admin, timeout=timeout)
    missing = [topic for topic in dict.fromkeys(topics) if topic not in metadata.topics]
    if not missing:
        return
    replicas, configs = topic_settings(len(metadata.brokers))
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions or settings.KAFKA_TOPIC_PARTITIONS, replication_factor=replicas,
                  config=configs) for topic in missing],
        operation_timeout=timeout,
    )
    for topic, future in futures.items():
        try:
            future.result()
            logger.info("created topic %s", topic)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


def make_producer(**overrides) -> Producer:
    """Every producer of the project: idempotent (retries never duplicate or reorder within a
    partition) and acks=all (a record is confirmed once every in-sync replica has it, so with
    min.insync.replicas=2 on a cluster an acknowledged record survives the loss of a broker)."""
    return Producer(client_config(**{"enable.idempotence": True, "acks": "all", "linger.ms": 5, **overrides}))


def demand_key(demand: dict) -> bytes | None:
    """Key by identity so every delivery of one demand lands on one partition, in order."""
    if isinstance(demand, dict) and "source" in demand and "id" in demand:
        return f"{demand['source']}:{demand['id']}".encode()
    return None


def produce_demand(producer: Producer, demand: dict, *, topic: str | None = None, on_delivery=None) -> None:
    value = json.dumps(demand, ensure_ascii=False).encode()
    while True:
        try:
            producer.produce(topic or settings.KAFKA_TOPICS[0], value=value, key=demand_key(demand), on_delivery=on_delivery)
            return
        except BufferError:
            producer.poll(0.1)  # local queue full: let deliveries drain, then try again
        producer.poll(0)


def admin_client(**overrides) -> AdminClient:
    """An admin client with the project's configuration (topic metadata, offsets by partition)."""
    return AdminClient(client_config(**overrides))


class DeliveryFailed(Exception):
    """Kafka did not confirm every record in time; nothing may be reported as accepted."""


@dataclass(slots=True)
class Delivered:
    topic: str
    partition: int
    offset: int


_producer: Producer | None = None
_producer_lock = threading.Lock()


def web_producer() -> Producer:
    """One producer per web process (thread-safe); its own delivery timeout bounds every wait."""
    global _producer
    with _producer_lock:
        if _producer is None:
            timeout_ms = int(settings.INGEST_DELIVERY_TIMEOUT * 1000)
            _producer = make_producer(**{"message.timeout.ms": timeout_ms, "linger.ms": 2})
        return _producer


def deliver(
    records: list[tuple[str, bytes | None, bytes, list]], *, producer: Producer | None = None, timeout: float | None = None
) -> list[Delivered]:
    """Produce (topic, key, value, headers) records and wait until the broker confirmed each one.

    Raises DeliveryFailed on any error or when `timeout` passes first. The producer's own
    `message.timeout.ms` equals the timeout, so a record we gave up on is not delivered much later
    behind the client's back (and if it were, the retry it prompted is harmless: same source + id).
    """
    producer = producer or web_producer()
    timeout = settings.INGEST_DELIVERY_TIMEOUT if timeout is None else timeout
    results: list[Delivered | None] = [None] * len(records)
    errors: list[str] = []
    done = threading.Event()
    remaining = [len(records)]
    lock = threading.Lock()

    def on_delivery(index, error, message):
        # Called from whichever thread polls the shared producer: only touch our own state.
        with lock:
            if error is not None:
                errors.append(str(error))
            else:
                results[index] = Delivered(message.topic(), message.partition(), message.offset())
            remaining[0] -= 1
            if remaining[0] == 0:
                done.set()

    for index, (topic, key, value, headers) in enumerate(records):
        try:
            producer.produce(
                topic, value=value, key=key, headers=headers,
                on_delivery=lambda error, message, index=index: on_delivery(index, error, message),
            )
        except BufferError:
            raise DeliveryFailed("the producer's local queue is full; try again shortly") from None
        except KafkaException as exc:
            raise DeliveryFailed(f"could not produce: {exc}") from exc
    deadline = time.monotonic() + timeout + 1.0  # a little past message.timeout.ms: get the verdict
    while not done.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            raise DeliveryFailed(f"Kafka did not confirm {remaining[0]} of {len(records)} record(s) within {timeout:g}s")
        producer.poll(min(left, 0.05))
    if errors:
        raise DeliveryFailed(f"Kafka refused {len(errors)} of {len(records)} record(s): {errors[0]}")
    broker_outage.ok()
    return results  # type: ignore[return-value]


