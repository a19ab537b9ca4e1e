"""The reference article's consumer, made to store what it reads: the baseline of the ingest benchmark.

One message → `json.loads` → one ORM save (autocommit: one database commit) → one synchronous
Kafka offset commit, exactly the loop of the article's example (`for message in consumer: …;
consumer.commit()`), with confluent-kafka instead of kafka-python. Stops after `--limit` stored.

    DATABASE_URL=… python -m bench.naive_consumer --topic T --group G --limit 10000
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from datetime import datetime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    parser.add_argument("--limit", type=int, default=10_000)
    parser.add_argument("--timeout", type=float, default=600, help="give up after this many seconds")
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "unified_msg_site.settings")
    import django

    django.setup()
    from confluent_kafka import Consumer
    from django.utils import timezone

    from demands.models import Demand

    stopping = False

    def request_stop(_signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": args.group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([args.topic])
    stored = 0
    deadline = time.monotonic() + args.timeout
    try:
        while stored < args.limit and not stopping and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            data = json.loads(message.value().decode("utf-8"))
            Demand.objects.create(
                source=data["source"], message_id=data["id"], type=data["type"], content=data["content"],
                occurred_at=datetime.fromisoformat(data["timestamp"]), received_at=timezone.now(),
                kafka_topic=message.topic(), kafka_partition=message.partition(), kafka_offset=message.offset(),
            )
            consumer.commit(message=message, asynchronous=False)
            stored += 1
    finally:
        consumer.close()
    print(f"naive consumer: stored {stored}")
    return 0 if stored >= args.limit else 1


if __name__ == "__main__":
    raise SystemExit(main())
