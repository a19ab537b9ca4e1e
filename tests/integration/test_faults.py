"""Faults with real `consume_demands` processes, the real broker and PostgreSQL: nothing is lost,
nothing is stored twice, and committed offsets never pass what the database holds.

Slow (minutes): run with `-m slow`. The shared broker and database are never stopped; the outage
tests start their own PostgreSQL or Kafka (tests/integration/processes.py) and stop that.
"""

from __future__ import annotations

import os
import random
import re
import signal
import time
import uuid

import psycopg
import pytest

from .processes import (
    SHARED_KAFKA,
    DemandFeed,
    OffsetWatch,
    PrivateKafka,
    PrivatePostgres,
    assert_each_stored_exactly_once,
    assert_everything_committed,
    committed_offsets,
    consumer_process,
    end_offsets,
    wait_until,
)

pytestmark = [pytest.mark.slow]


# -- kill -9 --------------------------------------------------------------------------------------
@pytest.mark.timeout(360)
def test_kill_9_ten_times_while_20000_demands_flow_stores_each_exactly_once(pg_database, new_topic, started, tmp_path):
    seed = int(os.environ.get("UMSG_FAULT_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    print(f"kill moments seeded with UMSG_FAULT_SEED={seed}")
    topic, group = new_topic(partitions=3), f"rel-{uuid.uuid4().hex[:8]}"
    # ~80 s of flow: long enough that all ten kills happen while demands are still arriving.
    feed = DemandFeed(SHARED_KAFKA, topic, count=20_000, rate=250).start()
    consumer = consumer_process(topic=topic, group=group, database=pg_database, log_dir=tmp_path)
    started.append(consumer.start())
    watch = OffsetWatch(SHARED_KAFKA, group, topic, 3, feed, pg_database).start()

    stored_at_kill = []
    for _ in range(10):
        before = pg_database.count()
        wait_until(lambda: pg_database.count() > before, timeout=60, interval=0.05, what="consumer progress after a restart")
        time.sleep(rng.uniform(0, 0.8))  # somewhere in a batch: parsing, inserting, committing or polling
        consumer.signal(signal.SIGKILL)
        assert consumer.wait(10) == -signal.SIGKILL
        stored_at_kill.append(pg_database.count())
        consumer.start()
    feed.join()
    assert stored_at_kill[-1] < feed.count, "the kills should all land while demands flow"

    wait_until(lambda: pg_database.count() >= feed.count, timeout=120, interval=0.5, what="every demand stored")
    wait_until(lambda: committed_offsets(SHARED_KAFKA, group, topic, 3) == end_offsets(SHARED_KAFKA, topic, 3),
               timeout=30, interval=0.5, what="every offset committed")
    assert consumer.stop() == 0
    watch.stop()
    watch.check_once()
    assert watch.violations == [], f"committed offsets passed stored rows: {watch.violations[:3]}"
    assert watch.samples > 10
    assert_each_stored_exactly_once(pg_database, feed)
    assert_everything_committed(SHARED_KAFKA, group, topic, 3)


# -- PostgreSQL outage ----------------------------------------------------------------------------
@pytest.fixture
def private_pg():
    server = PrivatePostgres()
    try:
        server.start()
        yield server
    finally:
        server.destroy()


@pytest.mark.timeout(300)
def test_postgres_down_for_30_seconds_mid_stream_pauses_retries_and_resumes(private_pg, new_topic, started, tmp_path):
    pg_database = private_pg.migrated_database("umsg_rel")
    topic, group = new_topic(partitions=3), f"rel-{uuid.uuid4().hex[:8]}"
    feed = DemandFeed(SHARED_KAFKA, topic, count=8_000, rate=150).start()  # still flowing after the outage
    # The default retry budget (CONSUMER_MAX_FAILURES=10, back-off capped at 30 s) must ride it out.
    consumer = consumer_process(topic=topic, group=group, database=pg_database, log_dir=tmp_path)
    started.append(consumer.start())
    watch = OffsetWatch(SHARED_KAFKA, group, topic, 3, feed, pg_database).start()
    wait_until(lambda: pg_database.count() > 1000, timeout=60, what="consumer running before the outage")

    private_pg.stop()
    time.sleep(2)  # a batch whose transaction committed just before the stop may still commit its offsets
    committed_during = [committed_offsets(SHARED_KAFKA, group, topic, 3)]
    outage_end = time.monotonic() + 28
    while time.monotonic() < outage_end:
        time.sleep(4)
        committed_during.append(committed_offsets(SHARED_KAFKA, group, topic, 3))
        assert consumer.running, "the consumer gave up during a 30 s outage:\n" + consumer.log()[-3000:]
    private_pg.start()

    # Nothing could be stored, so nothing may have been committed.
    assert all(sample == committed_during[0] for sample in committed_during), committed_during
    feed.join()
    wait_until(lambda: pg_database.count() >= feed.count, timeout=120, interval=0.5, what="every demand stored")
    wait_until(lambda: committed_offsets(SHARED_KAFKA, group, topic, 3) == end_offsets(SHARED_KAFKA, topic, 3),
               timeout=30, interval=0.5, what="every offset committed")
    assert consumer.exit_codes == [], "the consumer restarted: it should have waited"
    assert consumer.stop() == 0
    assert "retrying in" in consumer.log()  # it did pause and retry
    watch.stop()
    watch.check_once()
    assert watch.violations == []
    assert_each_stored_exactly_once(pg_database, feed)


# -- broker restart -------------------------------------------------------------------------------
@pytest.fixture
def private_kafka():
    broker = PrivateKafka()
    try:
        broker.start()
        yield broker
    finally:
        broker.destroy()


@pytest.mark.timeout(360)
def test_broker_restart_mid_stream_loses_and_duplicates_nothing(private_kafka, pg_database, new_topic, started, tmp_path):
    bootstrap = private_kafka.bootstrap
    topic, group = new_topic(bootstrap, partitions=3), f"rel-{uuid.uuid4().hex[:8]}"
    feed = DemandFeed(bootstrap, topic, count=8_000, rate=200).start()
    consumer = consumer_process(topic=topic, group=group, database=pg_database, log_dir=tmp_path, bootstrap=bootstrap)
    started.append(consumer.start())
    watch = OffsetWatch(bootstrap, group, topic, 3, feed, pg_database).start()
    wait_until(lambda: pg_database.count() > 1000, timeout=60, what="consumer running before the restart")

    # While the broker is down the consumer may still store what it had prefetched, but cannot
    # commit it: it retries the batch (harmlessly, the rows exist) until the broker is back.
    private_kafka.stop()
    time.sleep(5)
    private_kafka.start()

    feed.join(timeout=240)
    wait_until(lambda: pg_database.count() >= feed.count, timeout=120, interval=0.5, what="every demand stored")
    wait_until(lambda: committed_offsets(bootstrap, group, topic, 3) == end_offsets(bootstrap, topic, 3),
               timeout=60, interval=0.5, what="every offset committed")
    assert consumer.exit_codes == [], "the consumer exited during the broker restart:\n" + consumer.log()[-3000:]
    assert consumer.stop() == 0
    watch.stop()
    watch.check_once()
    assert watch.violations == []
    assert watch.samples > 5
    assert_each_stored_exactly_once(pg_database, feed)


# -- SIGTERM --------------------------------------------------------------------------------------
@pytest.mark.timeout(180)
def test_sigterm_during_a_batch_finishes_it_commits_and_exits_0_with_no_duplicate_on_restart(
    pg_database, new_topic, started, tmp_path
):
    topic, group = new_topic(partitions=3), f"rel-{uuid.uuid4().hex[:8]}"
    feed = DemandFeed(SHARED_KAFKA, topic, count=3_000, rate=100_000).start()
    feed.join()
    first = consumer_process(topic=topic, group=group, database=pg_database, log_dir=tmp_path, name="first", batch_size=500)
    started.append(first)

    # Hold the batch inside its transaction: the test locks the group table, so the consumer's
    # first batch waits on it mid-transaction. SIGTERM arrives exactly then.
    with psycopg.connect(pg_database.url) as blocker:
        blocker.execute("LOCK TABLE demands_demandgroup IN EXCLUSIVE MODE")
        first.start()
        wait_until(lambda: pg_database.query(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )[0][0] > 0, timeout=60, what="the consumer's batch waiting inside its transaction")
        first.signal(signal.SIGTERM)
        time.sleep(1)
        assert first.running, "SIGTERM must let the batch finish, not abort it"
        blocker.rollback()  # release the lock: the batch completes
    assert first.wait(30) == 0
    stored = pg_database.count()
    assert 0 < stored <= 500  # that one batch, and no other after the stop request
    committed = committed_offsets(SHARED_KAFKA, group, topic, 3)
    assert sum(max(offset, 0) for offset in committed.values()) == stored  # exactly the batch, committed
    assert "SIGTERM: finishing the current batch" in first.log()

    second = consumer_process(topic=topic, group=group, database=pg_database, log_dir=tmp_path, name="second")
    started.append(second.start())
    wait_until(lambda: pg_database.count() >= feed.count, timeout=60, interval=0.2, what="the rest stored")
    assert second.stop() == 0
    assert re.search(r"\b0 duplicates", second.log()), "the restarted consumer read the finished batch again"
    assert_each_stored_exactly_once(pg_database, feed)
    assert_everything_committed(SHARED_KAFKA, group, topic, 3)
