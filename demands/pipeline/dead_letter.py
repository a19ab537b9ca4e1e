"""The dead-letter topic: rejected records, copied there with why and where they came from.

Each rejected record is produced to the dead-letter topic with its original key and value and
the headers dlq.reason, dlq.topic, dlq.partition and dlq.offset. The producer is flushed before
the loop commits the batch's offsets: a delivery that fails (or does not finish within 30 s)
raises, so the batch is retried and nothing is committed — a rejected record is never lost
between the two topics. The same records are stored as RejectedMessage (the DLQ work queue).
"""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException, Producer

from .parse import IncomingMessage


class DeadLetterWriter:
    def __init__(self, producer: Producer, topic: str):
        self.producer = producer
        self.topic = topic

    def write(self, rejected: list[tuple[IncomingMessage, str]]) -> None:
        """Produce (record, reason) pairs and wait until the broker has them all."""
        failed: list[KafkaError] = []

        def on_delivery(error, _message):
            if error is not None:
                failed.append(error)

        for record, reason in rejected:
            headers = [
                ("dlq.reason", reason.encode()),
                ("dlq.topic", record.topic.encode()),
                ("dlq.partition", str(record.partition).encode()),
                ("dlq.offset", str(record.offset).encode()),
            ]
            self.producer.produce(self.topic, value=record.value, key=record.key, headers=headers, on_delivery=on_delivery)
        remaining = self.producer.flush(30)
        if remaining or failed:
            raise KafkaException(f"dead-letter delivery failed ({remaining} undelivered, errors: {failed[:3]})")

    def close(self) -> None:
        self.producer.flush(10)
