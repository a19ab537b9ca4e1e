"""Ingest on a three-broker cluster against one broker, and the stall a killed partition leader causes.

Two parts, each on private brokers (services/kafka.sh with its own state dir and ports, as the
slow tests start them; see tests/integration/processes.py):

  throughput  for one broker and for KAFKA_BROKERS=3: a fresh topic (replication min(3, N),
              min.insync.replicas=2 on the cluster, as demands/kafka.ensure_topics makes it),
              pre-loaded by bench/workload.preload (librdkafka's default acks=all), then
              bench/ingest.run_contender measures ours (consume_demands into PostgreSQL) and
              floor (bench/floor_consumer.py) exactly as `python -m bench.ingest` does.
  stall       on the cluster: consume_demands runs while an acks=all idempotent producer sends at a
              fixed rate; the broker leading the most partitions is SIGKILLed, started again later.
              From the stored rows: produce→stored latency (the record's Kafka timestamp against
              received_at) p50/p99 before the kill and in the minute around it (30 s each side),
              and the seconds from the kill until stored rows per second are back at the sending
              rate.

    python -m bench.cluster_ingest [--messages 20000] [--rate 300] [--stall-seconds 60]

Prints a table, writes bench/results/cluster-ingest-<timestamp>.json. Everything it starts it
stops, everything it creates it removes.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from bench import harness, ingest
from bench.harness import PYTHON, RESULTS, log
from bench.workload import bench_demand, delete_topics, encode, preload
from tests.integration import processes
from tests.integration.processes import PrivateKafka, PrivateKafkaCluster

# Not the slow tests' 8030–8059: those may run meanwhile, and a killed broker's port looks free.
processes.PORTS = range(8060, 8090)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000, help="pre-loaded and consumed per contender and setup")
    parser.add_argument("--phases", default="ours,floor")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--rate", type=float, default=300, help="demands/s sent during the stall measurement")
    parser.add_argument("--stall-seconds", type=float, default=60, help="sending time; the kill is at a third of it")
    parser.add_argument("--down-seconds", type=float, default=15, help="how long the killed broker stays down")
    parser.add_argument("--pg-server", default="postgres://umsg@127.0.0.1:5433")
    parser.add_argument("--skip-throughput", action="store_true")
    return parser.parse_args(argv)


def make_topic(bootstrap: str, brokers: int, partitions: int) -> str:
    topic = f"bench-cluster-{uuid.uuid4().hex[:8]}"
    replicas = min(3, brokers)
    config = {"min.insync.replicas": "2" if replicas >= 2 else "1"}
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=replicas, config=config),
                                   NewTopic(f"{topic}.dlq", num_partitions=1, replication_factor=replicas, config=config)])
    for future in futures.values():
        future.result(60)
    time.sleep(1)  # metadata reaches every broker
    return topic


def contender_args(args, bootstrap: str) -> SimpleNamespace:
    # bench/ingest.run_contender reads these from its own argparse namespace.
    return SimpleNamespace(kafka_config=[], bootstrap=bootstrap, batch_size=500, batch_time=0.2, messages=args.messages,
                           naive_messages=args.messages, phase_timeout=600, profile_on_cpu=False, keep=False)


def throughput(args, template, name: str, broker, brokers: int, log_dir: Path) -> list[dict]:
    topic = make_topic(broker.bootstrap, brokers, args.partitions)
    try:
        loaded = preload(broker.bootstrap, topic, args.messages, run=uuid.uuid4().hex[:6], log=log)
        log(f"{name}: pre-loaded {loaded['messages']:,} in {loaded['seconds']} s ({loaded['rate']:,}/s, acks=all)")
        rows = []
        for phase in args.phases.split(","):
            result = ingest.run_contender(phase, template=template, topic=topic, run_tag=uuid.uuid4().hex[:6],
                                          attempt="1", args=contender_args(args, broker.bootstrap), log_dir=log_dir)
            rows.append({"setup": name, "phase": phase, "produce_rate": loaded["rate"], **result})
        return rows
    finally:
        delete_topics(broker.bootstrap, [topic, f"{topic}.dlq"])


class SteadyProducer(threading.Thread):
    def __init__(self, bootstrap: str, topic: str, *, rate: float, seconds: float):
        super().__init__(daemon=True)
        self.topic, self.rate, self.count = topic, rate, int(rate * seconds)
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                                  "linger.ms": 5, "message.timeout.ms": 300000})
        self.errors: list = []
        self.delivered = 0

    def _done(self, error, _message):
        if error is not None:
            self.errors.append(error)
        else:
            self.delivered += 1

    def run(self):
        import random
        rng, run, started = random.Random(7), uuid.uuid4().hex[:6], time.monotonic()
        for index in range(self.count):
            key, value = encode(bench_demand(rng, index, run))
            while True:
                try:
                    self.producer.produce(self.topic, value=value, key=key, on_delivery=self._done)
                    break
                except BufferError:
                    self.producer.poll(0.05)
            self.producer.poll(0)
            ahead = (index + 1) / self.rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
        self.producer.flush(300)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 3)


def stall(args, template, cluster: PrivateKafkaCluster, log_dir: Path) -> dict:
    topic = make_topic(cluster.bootstrap, 3, args.partitions)
    db = template.fresh("stall")
    group = f"bench-stall-{uuid.uuid4().hex[:6]}"
    env = harness.child_env(db.url, KAFKA_TOPICS=topic, KAFKA_DLQ_TOPIC=f"{topic}.dlq",
                            KAFKA_BOOTSTRAP_SERVERS=cluster.bootstrap, LOG_LEVEL="INFO",
                            KAFKA_CONFIG_SESSION_TIMEOUT_MS="6000", KAFKA_CONFIG_HEARTBEAT_INTERVAL_MS="1500")
    consumer = harness.start("stall-consumer", [PYTHON, "manage.py", "consume_demands", "--topics", topic, "--group", group,
                                                "--no-broadcast", "--batch-size", "500", "--batch-time", "0.2"],
                             env=env, log_dir=log_dir)
    result: dict = {"rate_sent": args.rate}
    try:
        deadline = time.monotonic() + 180
        while "partitions assigned" not in consumer.log_path.read_text(errors="replace"):
            assert consumer.proc.poll() is None and time.monotonic() < deadline, consumer.tail()
            time.sleep(0.5)
        producer = SteadyProducer(cluster.bootstrap, topic, rate=args.rate, seconds=args.stall_seconds)
        producer.start()
        time.sleep(args.stall_seconds / 3)
        leader, _ = Counter(cluster.leaders(topic).values()).most_common(1)[0]
        killed_at = datetime.now(timezone.utc)
        log(f"stall: kill-broker {leader} (leads the most partitions) at {killed_at:%H:%M:%S}")
        cluster.kill_broker(leader)
        time.sleep(args.down_seconds)
        log(f"stall: start-broker {leader}")
        cluster.start_broker(leader)
        result["restart_seconds"] = round((datetime.now(timezone.utc) - killed_at).total_seconds(), 1)
        producer.join(600)
        target = producer.delivered
        deadline = time.monotonic() + 300
        while db.count() < target and time.monotonic() < deadline and consumer.proc.poll() is None:
            time.sleep(1)
        rows = db._conn.execute(
            "SELECT kafka_timestamp, received_at FROM demands_demand WHERE kafka_timestamp IS NOT NULL").fetchall()
        result.update(killed_node=leader, delivered=target, stored=len(rows), producer_errors=len(producer.errors))
    finally:
        result["consumer_exit"] = harness.stop(consumer)
    db.drop()
    delete_topics(cluster.bootstrap, [topic, f"{topic}.dlq"])

    def latency(lo: float, hi: float) -> list[float]:
        return [(received - ts).total_seconds() for ts, received in rows
                if lo <= (ts - killed_at).total_seconds() < hi]
    before, around = latency(-args.stall_seconds, -1), latency(-30, 30)
    result.update(p50_before=percentile(before, 0.5), p99_before=percentile(before, 0.99),
                  p50_around_kill=percentile(around, 0.5), p99_around_kill=percentile(around, 0.99),
                  max_around_kill=percentile(around, 1.0))
    # Stored per second (by received_at): back to steady when three seconds in a row store at least
    # 90% of the sending rate again after the stall began (the first second below half of it).
    per_second = Counter(int((received - killed_at).total_seconds()) for _, received in rows)
    stalled = next((s for s in range(0, 120) if per_second.get(s, 0) < args.rate / 2), None)
    back = None
    if stalled is not None:
        back = next((s for s in range(stalled, 300) if all(per_second.get(s + k, 0) >= 0.9 * args.rate for k in range(3))),
                    None)
    result.update(stall_began_s=stalled, back_to_steady_s=back)
    return result


def print_table(rows: list[dict], stalled: dict | None) -> None:
    print()
    print(f"{'setup':<12} {'contender':<10} {'produce/s (acks=all)':>21} {'stored/s':>10} {'steady/s':>10}")
    for row in rows:
        print(f"{row['setup']:<12} {row['phase']:<10} {row['produce_rate']:>21,} {row.get('rate') or 0:>10,.0f} "
              f"{row.get('rate_mid') or 0:>10,.0f}" + (f"  ERROR {row['error'][:60]}" if row.get("error") else ""))
    if stalled:
        print()
        print(f"leader kill on 3 brokers, {stalled['rate_sent']:.0f}/s sent, node {stalled.get('killed_node')} down "
              f"{stalled.get('restart_seconds')} s (kill → back in metadata)")
        print(f"  produce→stored latency  before: p50 {stalled['p50_before']} s  p99 {stalled['p99_before']} s")
        print(f"  ±30 s around the kill:          p50 {stalled['p50_around_kill']} s  p99 {stalled['p99_around_kill']} s  "
              f"max {stalled['max_around_kill']} s")
        print(f"  stored/s below half from {stalled['stall_began_s']} s after the kill, back at the sending rate "
              f"{stalled['back_to_steady_s']} s after it; {stalled.get('stored')}/{stalled.get('delivered')} stored, "
              f"consumer exit {stalled.get('consumer_exit')}")


def main(argv=None) -> int:
    args = parse_args(argv)
    tag = f"{harness.os.getpid()}_c"
    log_dir = RESULTS / f"cluster-ingest-{time.strftime('%Y%m%d-%H%M%S')}"
    log_dir.mkdir(parents=True, exist_ok=True)
    template = harness.PostgresTemplate(args.pg_server, tag)
    template.kind = "postgres"
    rows: list[dict] = []
    stalled = None
    try:
        harness.manage("migrate", "--noinput", "-v", "0", database_url=template.url)
        if not args.skip_throughput:
            single = PrivateKafka()
            try:
                single.start()
                log(f"one broker at {single.bootstrap}")
                rows += throughput(args, template, "1 broker", single, 1, log_dir)
            finally:
                single.destroy()
        cluster = PrivateKafkaCluster()
        try:
            started = time.monotonic()
            cluster.start()
            log(f"three brokers at {cluster.bootstrap} (ready in {time.monotonic() - started:.0f} s)")
            if not args.skip_throughput:
                rows += throughput(args, template, "3 brokers", cluster, 3, log_dir)
            stalled = stall(args, template, cluster, log_dir)
        finally:
            cluster.destroy()
    finally:
        for child in list(ingest._children):
            harness.stop(child)
        template.drop()
    print_table(rows, stalled)
    output = log_dir.with_suffix(".json")
    output.write_text(json.dumps({"load_avg": harness.os.getloadavg(), "throughput": rows, "stall": stalled},
                                 indent=2, default=str))
    log(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
