"""The benchmark workload: reference-format demands (~260 B, Chinese and English) and a fast loader.

Every demand has a unique id, so a run's N messages become exactly N stored demands. The topic is
loaded with confluent-kafka's producer directly (no Django, no per-message flush): loading is set-up,
not what is measured.
"""

from __future__ import annotations

import json
import random
import sys
import time

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from demands.demo import demo_demand

# What real sources append to a bare sentence: the context staff need (ids, versions, places).
_CONTEXT = {
    "user_feedback": ["用户 {uid},版本 {major}.{minor}.{patch},{device}", "user {uid} on {device}, app {major}.{minor}.{patch}"],
    "log_exception": ["trace_id={trace} host=app-{host:02d} pod={pod}", "请求 {trace} 在 app-{host:02d} 上失败"],
    "api_anomaly": ["监控规则 {rule},区域 cn-{region},告警 {trace}", "alert {trace} region cn-{region} rule {rule}"],
    "feature_request": ["来自客户 {uid} 的工单 #{ticket}", "ticket #{ticket} from account {uid}"],
}
_DEVICES = ["iPhone 14", "Pixel 8", "华为 Mate 60", "小米 14", "Chrome 126 / Windows 11", "Safari 17 / macOS"]
_REGIONS = ["north-1", "east-2", "south-1", "hongkong"]


def bench_demand(rng: random.Random, index: int, run: str) -> dict:
    """One reference-format demand with a unique id; optional priority/tags as the demo sends them."""
    demand = demo_demand(rng)
    demand["id"] = f"{run}-{index:07d}"
    context = rng.choice(_CONTEXT[demand["type"]]).format(
        uid=rng.randint(10_000, 9_999_999),
        major=rng.randint(3, 6), minor=rng.randint(0, 20), patch=rng.randint(0, 9),
        device=rng.choice(_DEVICES),
        trace="%032x" % rng.getrandbits(128),
        host=rng.randint(1, 40), pod="%08x" % rng.getrandbits(32),
        rule=f"R{rng.randint(100, 999)}", region=rng.choice(_REGIONS), ticket=rng.randint(10_000, 99_999),
    )
    demand["content"] = f"{demand['content']} ({context})"
    return demand


def encode(demand: dict) -> tuple[bytes, bytes]:
    """(key, value) as `produce_demands` sends them: keyed by source:id, UTF-8 JSON."""
    return f"{demand['source']}:{demand['id']}".encode(), json.dumps(demand, ensure_ascii=False).encode()


def create_topic(bootstrap: str, topic: str, partitions: int, *, timeout: float = 30.0) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)], operation_timeout=timeout)
    for future in futures.values():
        try:
            future.result(timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    deadline = time.monotonic() + timeout  # metadata can lag the creation by a moment
    while time.monotonic() < deadline:
        meta = admin.list_topics(topic, timeout=5).topics.get(topic)
        if meta is not None and meta.error is None and len(meta.partitions) == partitions:
            return
        time.sleep(0.2)
    raise RuntimeError(f"topic {topic} did not appear with {partitions} partitions within {timeout}s")


def delete_topics(bootstrap: str, topics: list[str], *, timeout: float = 30.0) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.delete_topics(topics, operation_timeout=timeout)
    for topic, future in futures.items():
        try:
            future.result(timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                print(f"warning: could not delete topic {topic}: {exc}", file=sys.stderr)


def preload(bootstrap: str, topic: str, count: int, *, run: str, seed: int = 6, timeout: float = 300.0,
            log=print) -> dict:
    """Produce `count` demands to `topic` as fast as the client goes; return size and time figures."""
    rng = random.Random(seed)
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "linger.ms": 20,
        "batch.size": 1_000_000,
        "queue.buffering.max.messages": 500_000,
        "compression.type": "none",  # as produce_demands sends: the consumer pays no decompression
    })
    failed: list[KafkaError] = []

    def on_delivery(error, _message):
        if error is not None:
            failed.append(error)

    started = time.monotonic()
    deadline = started + timeout
    last_report = started
    total_bytes = 0
    for index in range(count):
        key, value = encode(bench_demand(rng, index, run))
        total_bytes += len(value)
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
                if time.monotonic() > deadline:
                    raise TimeoutError(f"pre-load did not finish within {timeout}s")
        if index % 1000 == 0:
            producer.poll(0)
            now = time.monotonic()
            if now - last_report >= 3:
                log(f"  pre-load: {index:,}/{count:,} produced")
                last_report = now
    remaining = producer.flush(max(1.0, deadline - time.monotonic()))
    if remaining or failed:
        raise RuntimeError(f"pre-load failed: {remaining} undelivered, errors {failed[:3]}")
    elapsed = time.monotonic() - started
    return {"messages": count, "bytes": total_bytes, "avg_bytes": round(total_bytes / max(count, 1), 1),
            "seconds": round(elapsed, 2), "rate": round(count / elapsed)}
