"""Kafka as it runs in production: three brokers, losing one at a time while demands flow.

With replication 3 and min.insync.replicas=2 (demands/kafka.py ensure_topics) and acks=all
idempotent producers, a demand that Kafka acknowledged — a delivery confirmation, or a 202 from
POST /api/ingest/ — must survive a SIGKILLed partition leader, a SIGKILLed group coordinator
and a rolling restart, and be stored exactly once, while the consumer, the web process and the
monitor stay up and the monitor records the under-replicated partitions.

Slow: run with `-m slow`. The cluster is private (services/kafka.sh, KAFKA_BROKERS=3, own state
dir and ports) and shared by this module's tests: a cold start of three JVMs is the slowest part.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter

import psycopg
import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from .processes import (
    ManagedProcess,
    PrivateKafkaCluster,
    consumer_process,
    daphne_process,
    free_ports,
    monitor_process,
    run_manage,
    wait_until,
)

pytestmark = [pytest.mark.slow]

REDIS_URL = "redis://127.0.0.1:6380/5"
CRASH_MARKS = ("Segmentation fault", "Assertion", "SIGSEGV", "core dumped")
DEMANDS = 20_000  # at least; half through a Kafka producer, half over HTTP
RATE = 150  # demands per second in all
HTTP_BATCH = 20


@pytest.fixture(scope="module")
def cluster():
    cluster = PrivateKafkaCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


def _body(prefix: str, i: int) -> dict:
    return {"id": f"{prefix}{i:06d}", "type": "user_feedback", "content": f"页面加载太慢 #{i}",
            "timestamp": "2025-04-05T10:30:00Z"}


class Feed(threading.Thread):
    """Sends at `rate` until it has sent `count` and `done` is set (the sequence of failures is
    over), so demands flow through all of it however long the brokers take to restart."""

    def __init__(self, *, count: int, rate: float):
        super().__init__(daemon=True)
        self.count, self.rate, self.sent, self.done = count, rate, 0, threading.Event()
        self.acknowledged: set[tuple[str, str]] = set()

    def more(self) -> bool:
        return self.sent < self.count or (not self.done.is_set() and self.sent < 4 * self.count)

    def pace(self, started: float) -> None:
        ahead = self.sent / self.rate - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)

    def sent_identities(self) -> set[tuple[str, str]]:
        return {(self.source, f"{self.prefix}{i:06d}") for i in range(self.sent)}


class KafkaFeed(Feed):
    """Demands from an acks=all idempotent producer; acknowledged = delivery confirmed."""

    source, prefix = "cluster-kafka", "k"

    def __init__(self, bootstrap: str, topic: str, *, count: int, rate: float):
        super().__init__(count=count, rate=rate)
        self.topic = topic
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                                  "linger.ms": 5, "message.timeout.ms": 300000})
        self.errors: list = []

    def _delivered(self, error, message):
        if error is not None:
            self.errors.append(error)
        else:
            self.acknowledged.add((self.source, json.loads(message.value())["id"]))

    def run(self):
        started = time.monotonic()
        while self.more():
            payload = {**_body(self.prefix, self.sent), "source": self.source}
            while True:
                try:
                    self.producer.produce(self.topic, json.dumps(payload, ensure_ascii=False).encode(),
                                          key=f"{self.source}:{payload['id']}".encode(), on_delivery=self._delivered)
                    break
                except BufferError:
                    self.producer.poll(0.1)
            self.sent += 1
            self.producer.poll(0)
            self.pace(started)
        self.producer.flush(300)


class HttpFeed(Feed):
    """Demands POSTed to /api/ingest/ in batches; acknowledged = in a 202's `accepted`."""

    source, prefix = "cluster-http", "h"

    def __init__(self, port: int, api_key: str, *, count: int, rate: float):
        super().__init__(count=count, rate=rate)
        self.url, self.api_key = f"http://127.0.0.1:{port}/api/ingest/", api_key
        self.refused: Counter = Counter()  # status (or error) → requests: a 503 while a leader moves is allowed

    def _post(self, batch: list[dict]) -> None:
        request = urllib.request.Request(self.url, data=json.dumps(batch, ensure_ascii=False).encode(), method="POST",
                                         headers={"Authorization": f"Bearer {self.api_key}",
                                                  "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, answer = response.status, json.loads(response.read())
        except urllib.error.HTTPError as refused:
            self.refused[refused.code] += 1
            return
        except OSError as exc:
            self.refused[type(exc).__name__] += 1
            return
        if status == 202:
            self.acknowledged.update((self.source, item["id"]) for item in answer["accepted"])
        else:
            self.refused[status] += 1

    def run(self):
        started = time.monotonic()
        while self.more():
            first, self.sent = self.sent, self.sent + HTTP_BATCH
            self._post([_body(self.prefix, i) for i in range(first, self.sent)])
            self.pace(started)


class UnderReplicatedWatch(threading.Thread):
    """Keeps every cluster sample that listed under-replicated partitions. A sample is one row per
    minute that a later tick overwrites, so once the broker is back the row may say healthy again:
    look while it is down."""

    def __init__(self, database):
        super().__init__(daemon=True)
        self.database, self.seen, self.stopped = database, {}, threading.Event()

    def run(self):
        while not self.stopped.wait(1):
            try:
                rows = self.database.query("SELECT minute, under_replicated, brokers FROM demands_clustersample "
                                           "WHERE under_replicated <> '[]'::jsonb")
            except psycopg.Error:
                continue
            for minute, under, brokers in rows:
                self.seen[minute] = (under, brokers)


def _no_crash(process: ManagedProcess) -> None:
    log = process.log()
    marks = [mark for mark in CRASH_MARKS if mark in log]
    assert not marks and all(code == 0 for code in process.exit_codes), \
        f"{process.name} crashed ({marks}, exits {process.exit_codes}):\n{log[-4000:]}"


@pytest.mark.timeout(300)
def test_the_cluster_helpers_name_each_partitions_leader_and_the_groups_coordinator(cluster):
    topic, group = f"helpers-{uuid.uuid4().hex[:8]}", f"helpers-{uuid.uuid4().hex[:8]}"
    admin = cluster.admin()  # referenced until the futures complete
    for future in admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=3)]).values():
        future.result(timeout=60)
    leaders = wait_until(lambda: (found := cluster.leaders(topic)) and -1 not in found.values() and found,
                         timeout=60, what="leaders for the new topic")
    assert sorted(leaders) == list(range(6)) and set(leaders.values()) <= {1, 2, 3}
    # A committed offset makes the group (and, on a new cluster, __consumer_offsets) exist.
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group, "enable.auto.commit": False})

    def committed() -> bool:
        try:
            consumer.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
        except KafkaException:
            return False  # NOT_COORDINATOR while a new cluster loads __consumer_offsets
        return True
    try:
        wait_until(committed, timeout=90, interval=1, what="a first offset commit")
    finally:
        consumer.close()
    # As the broker answers it (asked in a child process), and as the hash of the group names it.
    assert cluster.coordinator(group) in {1, 2, 3}
    assert cluster.hashed_coordinator(group) in {1, 2, 3}


@pytest.mark.timeout(900)
def test_acknowledged_demands_survive_a_killed_leader_a_killed_coordinator_and_a_rolling_restart(
    cluster, pg_database, started, tmp_path
):
    topic, group = f"cluster-{uuid.uuid4().hex[:8]}", f"cluster-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "sequence.log"

    def note(what: str) -> None:
        with open(log, "a") as out:
            out.write(f"{time.strftime('%H:%M:%S')} {what}\n")

    # The consumer creates the topic (ensure_topics: 3 replicas, min.insync.replicas=2 here).
    consumer = consumer_process(topic=topic, group=group, database=pg_database, log_dir=tmp_path,
                                bootstrap=cluster.bootstrap)
    started.append(consumer.start())
    wait_until(lambda: "partitions assigned" in consumer.log() or not consumer.running, timeout=120,
               what="consumer joined")
    assert consumer.running, consumer.log()[-4000:]
    partitions = cluster.admin().list_topics(topic, timeout=15).topics[topic].partitions
    assert {len(p.replicas) for p in partitions.values()} == {3}

    (port,) = free_ports(1)
    web = daphne_process(port=port, database=pg_database, redis_url=REDIS_URL, prefix=f"cluster-{uuid.uuid4().hex[:6]}",
                         log_dir=tmp_path, name="web")
    web.env.update({"KAFKA_BOOTSTRAP_SERVERS": cluster.bootstrap, "KAFKA_TOPICS": topic, "LOG_LEVEL": "INFO"})
    monitor = monitor_process(topic=topic, group=group, database=pg_database, bootstrap=cluster.bootstrap,
                              log_dir=tmp_path)
    started.extend([web.start(), monitor.start()])
    api_key = run_manage("create_api_key", "--source", HttpFeed.source, "--name", "cluster test", "--rate", "1000000",
                         "--burst", "100000", "--quiet", env={"DATABASE_URL": pg_database.url}).strip()
    wait_until(lambda: port_answers(port) or not web.running, timeout=120, what="the web process answering")
    wait_until(lambda: "monitor running" in monitor.log() or not monitor.running, timeout=120, what="monitor running")
    processes = (consumer, web, monitor)

    def all_up(after: str) -> None:
        for process in processes:
            assert process.running, f"{process.name} exited after {after}:\n{process.log()[-4000:]}"

    all_up("starting")
    watch = UnderReplicatedWatch(pg_database)
    watch.start()
    kafka_feed = KafkaFeed(cluster.bootstrap, topic, count=DEMANDS // 2, rate=RATE / 2)
    http_feed = HttpFeed(port, api_key, count=DEMANDS // 2, rate=RATE / 2)
    kafka_feed.start()
    http_feed.start()
    try:
        wait_until(lambda: pg_database.count() >= 500, timeout=90, interval=0.5, what="the first demands stored")

        # 1. SIGKILL the broker leading the most partitions of the demand topic.
        leader, _ = Counter(cluster.leaders(topic).values()).most_common(1)[0]
        note(f"kill-broker {leader} (leader of most partitions: {cluster.leaders(topic)})")
        cluster.kill_broker(leader)
        wait_until(lambda: watch.seen, timeout=60, interval=0.5, what="a cluster sample listing under-replicated partitions")
        note(f"under-replicated seen; start-broker {leader}")
        cluster.start_broker(leader)
        all_up(f"killing leader {leader}")
        time.sleep(5)

        # 2. SIGKILL the group coordinator's broker.
        coordinator = cluster.coordinator(group)
        note(f"kill-broker {coordinator} (coordinator of {group})")
        cluster.kill_broker(coordinator)
        time.sleep(10)
        note(f"start-broker {coordinator}")
        cluster.start_broker(coordinator)
        all_up(f"killing coordinator {coordinator}")
        time.sleep(5)

        # 3. A rolling restart: each node stopped (controlled shutdown) and started in turn.
        for node in (1, 2, 3):
            note(f"stop-broker {node}")
            cluster.stop_broker(node)
            time.sleep(3)
            note(f"start-broker {node}")
            cluster.start_broker(node)
            all_up(f"restarting node {node}")
        note("rolling restart done")
        kafka_feed.done.set()
        http_feed.done.set()

        kafka_feed.join(400)
        http_feed.join(400)
        assert not kafka_feed.is_alive() and not http_feed.is_alive(), "the feeds did not finish"
        note(f"feeds done: kafka sent {kafka_feed.sent} acked {len(kafka_feed.acknowledged)} errors {len(kafka_feed.errors)}; "
             f"http sent {http_feed.sent} acked {len(http_feed.acknowledged)} refused {dict(http_feed.refused)}")
        acknowledged = kafka_feed.acknowledged | http_feed.acknowledged
        assert len(acknowledged) > (kafka_feed.sent + http_feed.sent) // 2  # the cluster kept taking most writes

        def all_stored() -> bool:
            return acknowledged <= set(pg_database.identities())
        wait_until(all_stored, timeout=180, interval=1, what="every acknowledged demand stored")
        time.sleep(3)  # anything redelivered after a lost commit would land now
    finally:
        kafka_feed.done.set()
        http_feed.done.set()
        watch.stopped.set()
        watch.join(10)
        note(f"under-replicated samples: {watch.seen}")

    identities = pg_database.identities()
    sent = kafka_feed.sent_identities() | http_feed.sent_identities()
    assert len(identities) == len(set(identities)) and set(identities) <= sent
    assert acknowledged <= set(identities)
    # Group counters are written in the rows' transaction: a redelivered batch counted twice shows here.
    [(grouped,)] = pg_database.query("SELECT coalesce(sum(count), 0) FROM demands_demandgroup")
    assert grouped == len(identities)
    assert watch.seen, "no cluster sample listed under-replicated partitions while a broker was down"

    all_up("the whole sequence")
    for process in processes:
        process.stop()
        _no_crash(process)


def port_answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False
