"""Real processes for the slow tests: `consume_demands` and daphne subprocesses, databases cloned
from a migrated template, and private PostgreSQL / Kafka instances that a test may stop and start.

The shared services (`make services`) are never stopped: a test that takes a server down starts
its own on a free port in 8030–8059 with its own state directory, and removes it afterwards.
Every wait has a deadline; every process started here is ended by its own pid.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "services"
PORTS = range(8030, 8230)  # a slow run starts ~20 private brokers and servers; bench/cluster_ingest uses its own
# The shared PostgreSQL server (services/postgres.sh) the slow tests make their databases in.
SHARED_PG_SERVER = os.environ.get("UMSG_TEST_PG_SERVER", "postgres://umsg@127.0.0.1:5433")
SHARED_KAFKA = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")


def wait_until(predicate, *, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(interval)


_taken_ports: set[int] = set()


def free_ports(count: int = 1) -> list[int]:
    """Consecutive free loopback ports from our range (Kafka wants client + controller)."""
    for start in PORTS:
        candidates = list(range(start, start + count))
        if candidates[-1] not in PORTS or _taken_ports & set(candidates):
            continue
        if all(_port_free(port) for port in candidates):
            _taken_ports.update(candidates)
            return candidates
    raise RuntimeError(f"no {count} free consecutive ports in {PORTS.start}–{PORTS.stop - 1}")


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# -- PostgreSQL -----------------------------------------------------------------------------------
class PostgresServer:
    """A PostgreSQL server reached as the superuser `umsg`; databases are made and dropped here."""

    def __init__(self, server_url: str):
        self.server_url = server_url.rstrip("/")

    def url(self, database: str) -> str:
        return f"{self.server_url}/{database}"

    def admin(self):
        return psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=5)

    def create_database(self, name: str, *, template: str | None = None) -> "Database":
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return Database(self, name)

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def migrated_database(self, name: str) -> "Database":
        database = self.create_database(name)
        run_manage("migrate", "--noinput", "-v", "0", env={"DATABASE_URL": database.url})
        return database


class PrivateService:
    """A service started and stopped by its services/ script with its own state dir: set
    `script`, `script_timeout`, `state_dir` and `script_env()`."""

    script: str
    script_timeout: float
    state_dir: Path

    def script_env(self) -> dict:
        raise NotImplementedError

    def _script(self, command: str) -> None:
        result = subprocess.run([str(SERVICES / self.script), command], env=self.script_env(), capture_output=True,
                                text=True, timeout=self.script_timeout)
        if result.returncode != 0:
            raise RuntimeError(f"{self.script} {command} failed:\n{result.stdout}\n{result.stderr}")

    def start(self) -> None:
        self._script("start")

    def stop(self) -> None:
        self._script("stop")

    def destroy(self) -> None:
        try:
            self.stop()
        finally:
            _taken_ports.difference_update(getattr(self, "ports", ()))
            shutil.rmtree(self.state_dir, ignore_errors=True)


class PrivatePostgres(PrivateService, PostgresServer):
    """Our own PostgreSQL (services/postgres.sh with its own state dir and port), to stop at will."""

    def __init__(self):
        [self.port] = free_ports(1)
        self.state_dir = Path(tempfile.mkdtemp(prefix="umsg-rel-pg-", dir="/var/tmp"))
        super().__init__(f"postgres://umsg@127.0.0.1:{self.port}")

    script, script_timeout = "postgres.sh", 120

    def script_env(self) -> dict:
        return {**os.environ, "UMSG_STATE_DIR": str(self.state_dir), "UMSG_PG_PORT": str(self.port)}


@dataclass
class Database:
    server: PostgresServer
    name: str

    @property
    def url(self) -> str:
        return self.server.url(self.name)

    def query(self, sql: str, params=()) -> list[tuple]:
        with psycopg.connect(self.url, connect_timeout=5) as conn:
            return conn.execute(sql, params).fetchall()

    def identities(self) -> list[tuple[str, str]]:
        return self.query("SELECT source, message_id FROM demands_demand")

    def count(self) -> int:
        return self.query("SELECT count(*) FROM demands_demand")[0][0]

    def drop(self) -> None:
        self.server.drop_database(self.name)


def run_manage(*args: str, env: dict, timeout: float = 120) -> str:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=child_env(env), capture_output=True,
                            text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def child_env(extra: dict) -> dict:
    # Nothing from the test run's own configuration leaks in: each process gets what it is given.
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("DJANGO_", "KAFKA_", "REDIS_", "DATABASE_URL", "CONSUMER_", "PYTEST_"))}
    env.update({"PYTHONUNBUFFERED": "1", "KAFKA_BOOTSTRAP_SERVERS": SHARED_KAFKA})
    env.update(extra)
    return env


# -- Kafka ----------------------------------------------------------------------------------------
class PrivateKafka(PrivateService):
    """Our own single-node broker (services/kafka.sh with its own state dir and ports)."""

    def __init__(self):
        self.port, self.controller_port = self.ports = free_ports(2)
        self.state_dir = Path(tempfile.mkdtemp(prefix="umsg-rel-kafka-", dir="/var/tmp"))
        self.bootstrap = f"127.0.0.1:{self.port}"

    script, script_timeout = "kafka.sh", 180

    def script_env(self) -> dict:
        env = {key: value for key, value in os.environ.items() if key != "KAFKA_BOOTSTRAP_SERVERS"}
        env.update({"UMSG_STATE_DIR": str(self.state_dir), "KAFKA_PORT": str(self.port),
                    "KAFKA_CONTROLLER_PORT": str(self.controller_port), "UMSG_PYTHON": sys.executable,
                    "KAFKA_HEAP_OPTS": "-Xms128m -Xmx384m"})
        return env


class PrivateKafkaCluster(PrivateKafka):
    """Our own three-node KRaft cluster (services/kafka.sh with KAFKA_BROKERS=3): node N listens on
    `ports[2(N-1)]`, its controller on the port after it. Nodes are stopped, killed and started
    one at a time by the script, which waits until a started node is back in the metadata."""

    nodes = 3
    script_timeout = 300  # a cold start of three JVMs on a loaded 2-core machine

    def __init__(self):
        self.ports = free_ports(2 * self.nodes)
        self.port = self.ports[0]
        self.state_dir = Path(tempfile.mkdtemp(prefix="umsg-rel-kcluster-", dir="/var/tmp"))
        self.bootstrap = ",".join(f"127.0.0.1:{self.client_port(n)}" for n in range(1, self.nodes + 1))

    def client_port(self, node: int) -> int:
        return self.ports[2 * (node - 1)]

    def script_env(self) -> dict:
        env = {key: value for key, value in os.environ.items() if key != "KAFKA_BOOTSTRAP_SERVERS"}
        env.update({"UMSG_STATE_DIR": str(self.state_dir), "KAFKA_PORT": str(self.port),
                    "KAFKA_BROKERS": str(self.nodes), "UMSG_PYTHON": sys.executable})
        return env

    def _node(self, command: str, node: int) -> None:
        assert 1 <= node <= self.nodes, node
        result = subprocess.run([str(SERVICES / self.script), command, str(node)], env=self.script_env(),
                                capture_output=True, text=True, timeout=self.script_timeout)
        if result.returncode != 0:
            raise RuntimeError(f"{self.script} {command} {node} failed:\n{result.stdout}\n{result.stderr}")

    def stop_broker(self, node: int) -> None:
        self._node("stop-broker", node)

    def kill_broker(self, node: int) -> None:
        self._node("kill-broker", node)

    def start_broker(self, node: int) -> None:
        self._node("start-broker", node)

    def admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.bootstrap})

    def leaders(self, topic: str) -> dict[int, int]:
        """Partition → node id of its leader (-1: none), as the metadata says now."""
        admin = self.admin()
        metadata = admin.list_topics(topic, timeout=15)
        return {number: partition.leader for number, partition in metadata.topics[topic].partitions.items()}

    def coordinator(self, group: str) -> int:
        """The node id of the group's coordinator, as the broker answers DescribeConsumerGroups —
        asked in a child process: that coordinator-targeted request can abort librdkafka
        (`rd_kafka_enq_once_del_source_return: Assertion eonce->refcnt > 0`) while the coordinator
        is not available yet, the crash the product's probe child avoids. Falls back to the
        leader of the __consumer_offsets partition the group hashes to."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            answer = subprocess.run([sys.executable, "-c", _DESCRIBE_COORDINATOR, self.bootstrap, group],
                                    capture_output=True, text=True, timeout=90)
            if answer.returncode == 0 and answer.stdout.split() and answer.stdout.split()[-1].isdigit():
                return int(answer.stdout.split()[-1])
            time.sleep(1)
        return self.hashed_coordinator(group)

    def hashed_coordinator(self, group: str) -> int:
        """The leader of the __consumer_offsets partition the group maps to (`abs(group.hashCode()) % partitions`)."""
        partitions = wait_until(lambda: self.leaders("__consumer_offsets"), timeout=60, interval=1,
                                what="__consumer_offsets (made by the first group's first request)")
        return partitions[_java_string_hash(group) % len(partitions)]

    def destroy(self) -> None:
        try:
            self.stop()
        finally:
            _taken_ports.difference_update(self.ports)
            shutil.rmtree(self.state_dir, ignore_errors=True)


_DESCRIBE_COORDINATOR = """
import sys
from confluent_kafka.admin import AdminClient
admin = AdminClient({"bootstrap.servers": sys.argv[1]})
[future] = admin.describe_consumer_groups([sys.argv[2]], request_timeout=20).values()
print(future.result(timeout=30).coordinator.id)
"""


def _java_string_hash(text: str) -> int:
    """Java's String.hashCode() over UTF-16 code units, made non-negative as Kafka's Utils.abs does."""
    value = 0
    units = text.encode("utf-16-be")
    for index in range(0, len(units), 2):
        value = (31 * value + int.from_bytes(units[index:index + 2], "big")) & 0xFFFFFFFF
    return value & 0x7FFFFFFF


def create_topic(bootstrap: str, *, partitions: int) -> str:
    name = f"rel-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions), NewTopic(f"{name}.dlq", num_partitions=1)])
    for future in futures.values():
        future.result(timeout=30)
    return name


def delete_topic(bootstrap: str, name: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})  # referenced until the futures complete
    for future in admin.delete_topics([name, f"{name}.dlq"], operation_timeout=10).values():
        try:
            future.result(timeout=15)
        except KafkaException:
            pass  # already gone, or the (private) broker is: nothing left to clean


def demand(i: int, *, source: str = "fault-test") -> dict:
    return {"id": f"d{i:06d}", "type": "user_feedback", "content": f"页面加载太慢 #{i}", "timestamp": "2025-04-05T10:30:00Z",
            "source": source}


class DemandFeed:
    """Produces `count` demands keyed by source:id in a thread at about `rate` per second, and
    remembers where each landed (partition, offset) to check committed offsets against."""

    def __init__(self, bootstrap: str, topic: str, *, count: int, rate: float, source: str = "fault-test"):
        self.topic, self.count, self.rate, self.source = topic, count, rate, source
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20,
                                  "message.timeout.ms": 300000})
        self.positions: dict[str, tuple[int, int]] = {}  # message id → (partition, offset)
        self.errors: list = []
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _delivered(self, error, message):
        if error is not None:
            self.errors.append(error)
            return
        message_id = json.loads(message.value())["id"]
        with self._lock:
            self.positions[message_id] = (message.partition(), message.offset())

    def _run(self):
        started = time.monotonic()
        for i in range(self.count):
            payload = demand(i, source=self.source)
            while True:
                try:
                    self.producer.produce(self.topic, json.dumps(payload, ensure_ascii=False).encode(),
                                          key=f"{self.source}:{payload['id']}".encode(), on_delivery=self._delivered)
                    break
                except BufferError:
                    self.producer.poll(0.1)
            self.producer.poll(0)
            ahead = (i + 1) / self.rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
        self.producer.flush(120)

    def start(self) -> "DemandFeed":
        self.thread.start()
        return self

    def join(self, timeout: float = 180) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "producer did not finish"
        assert not self.errors, f"delivery errors: {self.errors[:3]}"
        assert len(self.positions) == self.count

    @property
    def expected(self) -> set[tuple[str, str]]:
        return {(self.source, f"d{i:06d}") for i in range(self.count)}

    def ids_below(self, committed: dict[int, int]) -> set[str]:
        """Ids produced at offsets below each partition's committed offset."""
        with self._lock:
            positions = dict(self.positions)
        return {message_id for message_id, (partition, offset) in positions.items() if offset < committed.get(partition, -1)}


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets per partition (-1001 = none yet), without joining the group."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        result = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in result}


@dataclass
class OffsetWatch:
    """Every id below a committed offset must already be stored. Samples the committed offsets
    first and the stored rows second (rows only grow, so a violation seen this way is real), in a
    thread, while the test does its damage."""

    bootstrap: str
    group: str
    topic: str
    partitions: int
    feed: DemandFeed
    database: Database
    violations: list = field(default_factory=list)
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self):
        self.thread = threading.Thread(target=self._run, daemon=True)

    def check_once(self) -> None:
        committed = committed_offsets(self.bootstrap, self.group, self.topic, self.partitions)
        below = self.feed.ids_below(committed)
        if not below:
            return
        stored = {message_id for source, message_id in self.database.identities() if source == self.feed.source}
        missing = below - stored
        if missing:
            self.violations.append((committed, sorted(missing)[:5], len(missing)))
        self.samples += 1

    def _run(self):
        while not self._stop.wait(0.5):
            try:
                self.check_once()
            except (KafkaException, psycopg.OperationalError):
                continue  # the broker or the database is down on purpose: sample again later

    def start(self) -> "OffsetWatch":
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(30)


# -- processes ------------------------------------------------------------------------------------
class ManagedProcess:
    """A subprocess in its own session, logging to a file; ended by its own pid."""

    def __init__(self, args: list[str], *, env: dict, log_dir: Path, name: str):
        self.args, self.env, self.name = args, env, name
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.exit_codes: list[int] = []

    def start(self) -> "ManagedProcess":
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} already running"
        log = open(self.log_path, "a")
        log.write(f"--- start {time.strftime('%H:%M:%S')}\n")
        log.flush()
        self.proc = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum: int) -> None:
        if self.running:
            os.kill(self.proc.pid, signum)

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout=timeout)
        self.exit_codes.append(code)
        return code

    def kill(self) -> None:
        if self.running:
            self.proc.kill()
            self.wait(30)

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM, then SIGKILL past `timeout`; the exit code, or None if it was not running."""
        if not self.running:
            return None
        self.signal(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def consumer_process(*, topic: str, group: str, database: Database, log_dir: Path, name: str = "consumer",
                     bootstrap: str = SHARED_KAFKA, batch_size: int = 500, extra_env: dict | None = None,
                     broadcast: bool = False) -> ManagedProcess:
    args = [sys.executable, "manage.py", "consume_demands", "--topics", topic, "--group", group,
            "--batch-size", str(batch_size), "--batch-time", "0.2"]
    if not broadcast:
        args.append("--no-broadcast")
    env = child_env({
        "DATABASE_URL": database.url,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_DLQ_TOPIC": f"{topic}.dlq",
        # A killed member's partitions move after 6 s (the broker's minimum), not the default 45 s.
        "KAFKA_CONFIG_SESSION_TIMEOUT_MS": "6000",
        "KAFKA_CONFIG_HEARTBEAT_INTERVAL_MS": "1500",
        "LOG_LEVEL": "INFO",
        **(extra_env or {}),
    })
    return ManagedProcess(args, env=env, log_dir=log_dir, name=name)


def monitor_process(*, topic: str, group: str, database: Database, bootstrap: str, log_dir: Path,
                    name: str = "evaluate_alerts") -> ManagedProcess:
    """`evaluate_alerts` watching `group` on `topic`, ticking every 2 s."""
    env = child_env({"DATABASE_URL": database.url, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_TOPICS": topic,
                     "KAFKA_CONSUMER_GROUP": group, "MONITORING_TICK_SECONDS": "2", "LOG_LEVEL": "INFO"})
    return ManagedProcess([sys.executable, "manage.py", "evaluate_alerts"], env=env, log_dir=log_dir, name=name)


def daphne_process(*, port: int, database: Database, redis_url: str, prefix: str, log_dir: Path, name: str) -> ManagedProcess:
    daphne = Path(sys.executable).with_name("daphne")
    args = [str(daphne), "-b", "127.0.0.1", "-p", str(port), "unified_msg_site.asgi:application"]
    env = child_env({"DATABASE_URL": database.url, "REDIS_URL": redis_url, "REDIS_CHANNEL_PREFIX": prefix,
                     "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost"})
    return ManagedProcess(args, env=env, log_dir=log_dir, name=name)


def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"watermarks-{uuid.uuid4().hex[:6]}"})
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)}
    finally:
        consumer.close()


def assert_each_stored_exactly_once(database, feed: DemandFeed) -> None:
    identities = database.identities()
    assert len(identities) == feed.count, f"{len(identities)} rows for {feed.count} demands"
    assert set(identities) == feed.expected
    # Group counters are written in the same transaction as the rows: a batch is all or nothing.
    [(grouped,)] = database.query("SELECT coalesce(sum(count), 0) FROM demands_demandgroup")
    assert grouped == feed.count


def assert_everything_committed(bootstrap, group, topic, partitions) -> None:
    assert committed_offsets(bootstrap, group, topic, partitions) == end_offsets(bootstrap, topic, partitions)
