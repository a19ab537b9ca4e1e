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


def client_config(**overrides) -> dict:
    """Settings' librdkafka properties (bootstrap servers, security…) plus per-client overrides."""
    # Small requests (a fetch, a lone record) go out at once instead of waiting on Nagle's algorithm
    # for an ACK the broker may delay: live latency is what this product is for.
    config = {"socket.nagle.disable": True, **settings.KAFKA_CLIENT_CONFIG}
    config.update(overrides)
    return config


def ensure_topics(topics: Iterable[str], *, partitions: int | None = None, timeout: float = 15.0) -> None:
    """Create the topics that do not exist yet (demand topics and the DLQ); existing ones are untouched."""
    admin = admin_client()
    existing = admin.list_topics(timeout=timeout).topics
    missing = [topic for topic in dict.fromkeys(topics) if topic not in existing]
    if not missing:
        return
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions or settings.KAFKA_TOPIC_PARTITIONS) for topic in missing],
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
    # Idempotent producer: retries never duplicate or reorder within a partition.
    return Producer(client_config(**{"enable.idempotence": True, "linger.ms": 5, **overrides}))


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
    return results  # type: ignore[return-value]


