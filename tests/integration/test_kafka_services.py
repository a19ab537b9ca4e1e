"""services/kafka.sh as production runs Kafka: a three-node KRaft cluster that keeps accepting
acks=all writes with a node down, and the opt-in SCRAM-SHA-512 listeners.

Slow (one and a half to two minutes on two idle cores): run with `-m slow`. Each test starts its own brokers with the
script, in a state dir of its own under pytest's tmp and on free ports from 29092 up, and stops
them; the shared broker is never touched.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from .processes import SERVICES, PrivateService, _port_free as _free, wait_until

pytestmark = [pytest.mark.slow]

FIRST_PORT, LAST_PORT = 29092, 29692


_taken: set[int] = set()


def free_base_port() -> int:
    """A KAFKA_PORT whose whole block is free: up to five nodes' client and controller ports
    (base..base+9) and their SASL ports (base+10..base+19)."""
    for base in range(FIRST_PORT, LAST_PORT, 20):
        block = set(range(base, base + 20))
        if not block & _taken and all(_free(port) for port in block):
            _taken.update(block)
            return base
    raise RuntimeError(f"no 20 free consecutive ports in {FIRST_PORT}–{LAST_PORT}")


class ScriptKafka(PrivateService):
    """Brokers started and stopped by services/kafka.sh with their own state dir and ports."""

    script, script_timeout = "kafka.sh", 240

    def __init__(self, state_dir, *, brokers: int = 1, sasl: bool = False):
        self.state_dir = state_dir
        self.port = free_base_port()
        self.brokers, self.sasl = brokers, sasl
        self.bootstrap = ",".join(f"127.0.0.1:{self.port + 2 * n}" for n in range(brokers))

    def script_env(self) -> dict:
        # Nothing of the shared broker's (or an external cluster's) settings leaks in.
        env = {key: value for key, value in os.environ.items() if not key.startswith("KAFKA_")}
        env.update({"UMSG_STATE_DIR": str(self.state_dir), "KAFKA_PORT": str(self.port),
                    "KAFKA_BROKERS": str(self.brokers), "KAFKA_SASL": "1" if self.sasl else "0",
                    "UMSG_PYTHON": sys.executable,
                    # CI's two cores may be busy with other suites: a node can take 30 s to boot.
                    "KAFKA_START_TIMEOUT": "180"})
        return env

    def run(self, *args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([str(SERVICES / self.script), *args], env={**self.script_env(), **(env or {})},
                                capture_output=True, text=True, timeout=self.script_timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"kafka.sh {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result

    def _script(self, command: str) -> None:
        self.run(command)

    def admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.bootstrap})

    def broker_ids(self) -> set[int]:
        return set(self.admin().list_topics(timeout=10).brokers)


def partitions(admin: AdminClient, topic: str):
    return sorted(admin.list_topics(topic, timeout=10).topics[topic].partitions.values(), key=lambda p: p.id)


def config_of(admin: AdminClient, kind: str, name: str) -> dict[str, str]:
    [future] = admin.describe_configs([ConfigResource(kind, name)]).values()
    return {key: entry.value for key, entry in future.result(timeout=15).items()}


def env_lines(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line)


def client_config(env: dict[str, str]) -> dict[str, str]:
    """What unified_msg_site/settings.py makes of KAFKA_BOOTSTRAP_SERVERS and KAFKA_CONFIG_*."""
    config = {"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"]}
    config.update({key[len("KAFKA_CONFIG_"):].lower().replace("_", "."): value
                   for key, value in env.items() if key.startswith("KAFKA_CONFIG_")})
    return config


def produce(config: dict, topic: str, count: int, *, partitions_: int = 1, timeout: float = 60) -> list:
    errors = []
    producer = Producer({**config, "acks": "all", "message.timeout.ms": int(timeout * 1000)})
    for i in range(count):
        producer.produce(topic, f"m{i}".encode(), partition=i % partitions_,
                         on_delivery=lambda error, _message: error is not None and errors.append(error))
    assert producer.flush(timeout + 10) == 0, "messages still in flight"
    return errors


def read_partition(config: dict, topic: str, expected: int, timeout: float = 20) -> list[bytes]:
    consumer = Consumer({**config, "group.id": f"reader-{uuid.uuid4().hex[:6]}", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    values, deadline = [], time.monotonic() + timeout
    try:
        while len(values) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                values.append(message.value())
    finally:
        consumer.close()
    return values


# -- a three-node cluster -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    kafka = ScriptKafka(tmp_path_factory.mktemp("kafka-cluster"), brokers=3)
    try:
        started = time.monotonic()
        kafka.start()
        print(f"3-node cluster ready in {time.monotonic() - started:.1f}s")
        yield kafka
    finally:
        kafka.destroy()


@pytest.mark.timeout(240)
def test_three_nodes_start_in_one_cluster_with_replicated_defaults(cluster):
    assert cluster.run("bootstrap").stdout.strip() == cluster.bootstrap
    status = cluster.run("status").stdout.splitlines()
    assert [line.split(":")[1].strip() for line in status] == ["node 1", "node 2", "node 3"]
    assert all("running on" in line for line in status), status
    assert cluster.broker_ids() == {1, 2, 3}

    admin = cluster.admin()
    topic = f"rf-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(topic, num_partitions=3)])[topic].result(timeout=30)  # broker defaults
    assert all(len(p.replicas) == 3 for p in partitions(admin, topic))
    assert {p.leader for p in partitions(admin, topic)} == {1, 2, 3}  # leadership spread over the nodes
    assert config_of(admin, "topic", topic)["min.insync.replicas"] == "2"
    broker = config_of(admin, "broker", "2")
    assert {key: broker[key] for key in (
        "default.replication.factor", "min.insync.replicas", "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor", "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor", "share.coordinator.state.topic.min.isr",
        "group.initial.rebalance.delay.ms")} == {
        "default.replication.factor": "3", "min.insync.replicas": "2", "offsets.topic.replication.factor": "3",
        "transaction.state.log.replication.factor": "3", "transaction.state.log.min.isr": "2",
        "share.coordinator.state.topic.replication.factor": "3", "share.coordinator.state.topic.min.isr": "2",
        "group.initial.rebalance.delay.ms": "0"}

    # The storage is formatted for three: starting it as one broker is refused before any JVM starts.
    refused = cluster.run("start", env={"KAFKA_BROKERS": "1"}, check=False)
    assert refused.returncode != 0
    assert "formatted for 3 broker(s)" in refused.stderr


@pytest.mark.timeout(240)
def test_losing_a_node_keeps_acks_all_writes_and_moves_its_leaders(cluster):
    admin = cluster.admin()
    topic = f"failover-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=3)])[topic].result(timeout=30)
    # Right after creation the metadata may list partitions without a leader yet (-1): wait for
    # every partition to have its leader and all three replicas in sync before choosing a victim.
    def settled():
        parts = partitions(admin, topic)
        return all(p.leader > 0 and len(p.isrs) == 3 for p in parts) and parts

    parts = wait_until(settled, timeout=30, interval=0.5, what="a leader and three in-sync replicas for every partition")
    victim = 2 if any(p.leader == 2 for p in parts) else parts[0].leader  # a node that leads something
    survivors = sorted({1, 2, 3} - {victim})
    led_by_victim = [p.id for p in parts if p.leader == victim]

    assert "killed" in cluster.run("kill-broker", str(victim)).stdout
    assert f"node {victim}: not running" in cluster.run("status", check=False).stdout

    # acks=all with min.insync.replicas=2: the two nodes left are enough. The writes to the victim's
    # partitions wait until the controller fences it (broker.session.timeout.ms, 9 s) and moves them.
    started = time.monotonic()
    assert produce({"bootstrap.servers": cluster.bootstrap}, topic, 30, partitions_=3) == []
    print(f"30 acks=all writes with node {victim} killed: {time.monotonic() - started:.1f}s")

    def moved():
        parts = partitions(admin, topic)
        return all(p.leader in survivors and sorted(p.isrs) == survivors for p in parts) and parts

    parts = wait_until(moved, timeout=30, interval=0.5, what=f"node {victim}'s partitions led elsewhere, ISR {survivors}")
    assert all(p.leader != victim for p in parts if p.id in led_by_victim)
    assert cluster.broker_ids() == set(survivors)

    started = time.monotonic()
    assert "back in the cluster" in cluster.run("start-broker", str(victim)).stdout
    print(f"start-broker {victim}: {time.monotonic() - started:.1f}s")
    assert cluster.broker_ids() == {1, 2, 3}
    wait_until(lambda: all(sorted(p.isrs) == [1, 2, 3] for p in partitions(admin, topic)), timeout=60,
               interval=0.5, what=f"node {victim} back in every ISR")
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": f"wm-{uuid.uuid4().hex[:6]}"})
    try:
        assert sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(3)) == 30
    finally:
        consumer.close()


# -- SCRAM --------------------------------------------------------------------------------------
@pytest.mark.timeout(180)
def test_sasl_scram_listener_logs_in_and_refuses_a_wrong_password(tmp_path):
    kafka = ScriptKafka(tmp_path, sasl=True)
    try:
        kafka.start()
        for variant, port in (("", kafka.port + 10), ("ssl", kafka.port + 11)):
            env = env_lines(kafka.run("sasl-env", *([variant] if variant else [])).stdout)
            assert env["KAFKA_BOOTSTRAP_SERVERS"] == f"127.0.0.1:{port}"
            assert env["KAFKA_CONFIG_SASL_MECHANISM"] == "SCRAM-SHA-512"
            assert (env["KAFKA_CONFIG_SASL_USERNAME"], env["KAFKA_CONFIG_SASL_PASSWORD"]) == ("umsg", "umsg-secret")
            config = client_config(env)
            topic = f"sasl-{variant or 'plain'}-{uuid.uuid4().hex[:6]}"
            assert produce(config, topic, 5, timeout=20) == []
            assert read_partition(config, topic, 5) == [f"m{i}".encode() for i in range(5)]

            # A wrong password: the broker says so at once (an authentication error, not a timeout).
            errors = []
            wrong = {**config, "sasl.password": "not-the-password", "error_cb": errors.append, "log_level": 0}
            started = time.monotonic()
            client = AdminClient(wrong)
            with pytest.raises(KafkaException):
                client.list_topics(timeout=5)
            client.poll(0)
            assert any(error.code() == KafkaError._AUTHENTICATION for error in errors), errors
            assert time.monotonic() - started < 6

        # PLAINTEXT stays as it was: everything else keeps working without credentials.
        assert kafka.broker_ids() == {1}
    finally:
        kafka.destroy()
