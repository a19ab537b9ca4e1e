"""The raw floor of the ingest benchmark: confluent-kafka + the database driver, no Django.

Same batching and the same guarantees as `consume_demands` (one transaction per batch, offsets
committed synchronously after it), with the least work that still stores a demand row:

- `upsert` (PostgreSQL): COPY the batch into a temporary staging table, then
  `INSERT INTO demands_demand … SELECT … ON CONFLICT (source, message_id) DO NOTHING` — the
  idempotent floor, the one the targets are measured against.
- `copy` (PostgreSQL): plain COPY into demands_demand — not idempotent; the absolute limit.
- `upsert` / `insert` (SQLite): `executemany` of `INSERT … ON CONFLICT DO NOTHING` / plain INSERT.

It writes into the migrated demands_demand table itself, so every index the product has is paid
for. Parsing is json.loads plus picking the five fields: no validation.

    python -m bench.floor_consumer --db-url postgres://… --topic T --group G --mode upsert
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import time
from datetime import datetime, timezone

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

COLUMNS = ("source", "message_id", "type", "content", "occurred_at", "priority", "status", "tags", "extra",
           "kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp", "received_at", "category",
           "version", "updated_at", "rule_changes")
KNOWN = {"id", "type", "content", "timestamp", "source", "priority", "tags"}
PRIORITIES = {"urgent", "high", "normal", "low"}


def rows_from(messages, now: datetime, *, sqlite: bool) -> list[tuple]:
    rows = []
    for message in messages:
        data = json.loads(message.value())
        priority = data.get("priority")
        extra = {k: v for k, v in data.items() if k not in KNOWN}
        occurred_at = data["timestamp"]
        _kind, millis = message.timestamp()
        kafka_ts = datetime.fromtimestamp(millis / 1000, tz=timezone.utc)
        if sqlite:  # Django's SQLite format: naive UTC text
            occurred_at = datetime.fromisoformat(occurred_at).astimezone(timezone.utc).replace(tzinfo=None).isoformat(" ")
            kafka_ts = kafka_ts.replace(tzinfo=None).isoformat(" ")
        rows.append((
            data["source"], data["id"], data["type"], data["content"], occurred_at,
            priority if priority in PRIORITIES else "normal", "new",
            json.dumps(data.get("tags") or [], ensure_ascii=False), json.dumps(extra, ensure_ascii=False),
            message.topic(), message.partition(), message.offset(), kafka_ts, now, "", 0, now, "[]",
        ))
    return rows


class PostgresWriter:
    def __init__(self, url: str, mode: str):
        import psycopg

        self.conn = psycopg.connect(url)
        self.mode = mode
        cols = ", ".join(COLUMNS)
        if mode == "upsert":
            self.conn.execute(
                f"CREATE TEMP TABLE demand_staging ON COMMIT DELETE ROWS AS SELECT {cols} FROM demands_demand WITH NO DATA"
            )
            self.conn.commit()
            self.copy_sql = f"COPY demand_staging ({cols}) FROM STDIN"
            self.insert_sql = (f"INSERT INTO demands_demand ({cols}) SELECT {cols} FROM demand_staging "
                               "ON CONFLICT (source, message_id) DO NOTHING")
        else:
            self.copy_sql = f"COPY demands_demand ({cols}) FROM STDIN"
            self.insert_sql = None

    def write(self, rows: list[tuple]) -> None:
        with self.conn.transaction(), self.conn.cursor() as cur:
            with cur.copy(self.copy_sql) as copy:
                for row in rows:
                    copy.write_row(row)
            if self.insert_sql:
                cur.execute(self.insert_sql)

    def close(self):
        self.conn.close()


class SqliteWriter:
    def __init__(self, url: str, mode: str):
        self.conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")  # as the project's settings
        self.conn.execute("PRAGMA synchronous=NORMAL")
        conflict = " ON CONFLICT (source, message_id) DO NOTHING" if mode == "upsert" else ""
        self.insert_sql = (f"INSERT INTO demands_demand ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
                           + conflict)

    def write(self, rows: list[tuple]) -> None:
        rows = [row[:13] + (row[13].replace(tzinfo=None).isoformat(" "),) + row[14:16]
                + (row[16].replace(tzinfo=None).isoformat(" "),) + row[17:] for row in rows]
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.executemany(self.insert_sql, rows)
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def close(self):
        self.conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db-url", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--mode", choices=["upsert", "copy", "insert"], default="upsert")
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--batch-time", type=float, default=0.2)
    parser.add_argument("--timeout", type=float, default=900, help="give up after this many seconds")
    parser.add_argument("--async-commit", action="store_true", help="commit offsets without waiting (final commit is synchronous)")
    args = parser.parse_args()

    sqlite = args.db_url.startswith("sqlite")
    writer = SqliteWriter(args.db_url, args.mode) if sqlite else PostgresWriter(args.db_url, args.mode)
    stopping = False

    def request_stop(_signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": args.group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "enable.auto.offset.store": False})
    held: set[int] = set()

    def rebalanced(verb: str, partitions, *, add: bool) -> None:
        # The line demands.pipeline.loop logs, so the benchmark finds when every process held its partitions.
        if not partitions:
            return
        (held.update if add else held.difference_update)(p.partition for p in partitions)
        stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
        print(f"{stamp} INFO floor: partitions {verb}: {args.topic}[{','.join(str(p.partition) for p in partitions)}]; "
              f"consuming {args.topic}[{','.join(map(str, sorted(held)))}]", flush=True)

    consumer.subscribe([args.topic], on_assign=lambda _c, ps: rebalanced("assigned", ps, add=True),
                       on_revoke=lambda _c, ps: rebalanced("revoked", ps, add=False),
                       on_lost=lambda _c, ps: rebalanced("lost", ps, add=False))
    deadline = time.monotonic() + args.timeout
    stored = 0
    committed: dict[int, int] = {}
    try:
        while not stopping and time.monotonic() < deadline:
            messages = consumer.consume(args.batch_size, args.batch_time)
            valid = []
            for message in messages:
                error = message.error()
                if error is None:
                    valid.append(message)
                elif error.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(error)
            if not valid:
                continue
            writer.write(rows_from(valid, datetime.now(timezone.utc), sqlite=sqlite))
            offsets: dict[int, int] = {}
            for message in valid:
                offsets[message.partition()] = message.offset() + 1
            committed.update(offsets)
            consumer.commit(offsets=[TopicPartition(args.topic, p, o) for p, o in offsets.items()],
                            asynchronous=args.async_commit)
            stored += len(valid)
    finally:
        if args.async_commit and committed:
            try:
                consumer.commit(offsets=[TopicPartition(args.topic, p, o) for p, o in committed.items()], asynchronous=False)
            except KafkaException:
                pass
        consumer.close()
        writer.close()
    print(f"floor consumer ({args.mode}): stored {stored}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
