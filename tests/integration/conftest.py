"""Integration fixtures: the real Kafka broker (started by `make services`), a fresh topic per test."""

import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from django.conf import settings
from django.db import OperationalError

from demands.pipeline.loop import ConsumeLoop

from .processes import SHARED_KAFKA, SHARED_PG_SERVER, PostgresServer, create_topic, delete_topic


def pytest_collection_modifyitems(items):
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.kafka)


@pytest.fixture(scope="session")
def kafka_admin():
    admin = AdminClient(dict(settings.KAFKA_CLIENT_CONFIG))
    try:
        admin.list_topics(timeout=15)
    except KafkaException as exc:
        pytest.fail(
            f"Kafka at {settings.KAFKA_CLIENT_CONFIG['bootstrap.servers']} is not reachable ({exc}). "
            "Start it with `make services`, or deselect these tests with -m 'not kafka'."
        )
    return admin


@pytest.fixture
def topic(kafka_admin):
    """A new 3-partition topic and its DLQ, deleted afterwards, so tests never see each other's data."""
    name = f"it-{uuid.uuid4().hex[:10]}"
    futures = kafka_admin.create_topics([NewTopic(name, num_partitions=3), NewTopic(f"{name}.dlq", num_partitions=1)])
    for future in futures.values():
        future.result(timeout=15)
    yield name
    kafka_admin.delete_topics([name, f"{name}.dlq"], operation_timeout=10)


def produce(topic: str, values: list[bytes], keys: list[bytes | None] | None = None) -> None:
    producer = Producer(dict(settings.KAFKA_CLIENT_CONFIG))
    for index, value in enumerate(values):
        producer.produce(topic, value=value, key=(keys[index] if keys else None))
    assert producer.flush(15) == 0


def read_all(topic: str, expected: int, timeout: float = 20.0):
    """Read `expected` records from the start of `topic` (for checking the DLQ)."""
    consumer = Consumer({**settings.KAFKA_CLIENT_CONFIG, "group.id": f"reader-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    records, deadline = [], time.monotonic() + timeout
    try:
        while len(records) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                records.append(message)
    finally:
        consumer.close()
    return records


class RunningLoop:
    """A ConsumeLoop in a thread, like the embedded dashboard runs it."""

    def __init__(self, topic: str, group: str, **kwargs):
        self.loop = ConsumeLoop(topics=[topic], group=group, dlq_topic=f"{topic}.dlq", batch_timeout=0.2, **kwargs)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            self.loop.run()
        except BaseException as exc:  # surfaced to the test through .error
            self.error = exc

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.loop.stop()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "consume loop did not stop"


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1, running: RunningLoop | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running is not None and running.error is not None:
            raise AssertionError(f"consume loop died: {running.error!r}") from running.error
        try:
            if predicate():
                return
        except OperationalError as exc:
            # SQLite test databases are in memory with a shared cache: a read that meets the consume
            # loop's write transaction fails at once ("table is locked") instead of waiting, as a
            # file database in WAL mode (the product's) would. That is "not yet", not an error.
            if "locked" not in str(exc):
                raise
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


# -- the slow tests' real processes (tests/integration/processes.py) ---------------------------
@pytest.fixture(scope="module")
def shared_pg():
    return PostgresServer(SHARED_PG_SERVER)


@pytest.fixture(scope="module")
def pg_template(shared_pg):
    """One migrated database per module; each test gets a copy (CREATE DATABASE … TEMPLATE)."""
    name = f"umsg_rel_tpl_{uuid.uuid4().hex[:8]}"
    shared_pg.migrated_database(name)
    yield name
    shared_pg.drop_database(name)


@pytest.fixture
def pg_database(shared_pg, pg_template):
    """A migrated database of its own on the shared PostgreSQL, for subprocesses to use."""
    db = shared_pg.create_database(f"umsg_rel_{uuid.uuid4().hex[:8]}", template=pg_template)
    yield db
    db.drop()


@pytest.fixture
def new_topic():
    made = []

    def make(bootstrap: str = SHARED_KAFKA, partitions: int = 3) -> str:
        name = create_topic(bootstrap, partitions=partitions)
        made.append((bootstrap, name))
        return name

    yield make
    for bootstrap, name in made:
        delete_topic(bootstrap, name)


@pytest.fixture
def started():
    """Every process a test starts; all ended (by pid) afterwards, whatever happened."""
    started = []
    yield started
    for process in started:
        process.kill()
