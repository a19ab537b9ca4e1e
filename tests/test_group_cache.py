"""Ingest remembers committed groups' ids, so a batch asks the database only about new fingerprints."""

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from demands.pipeline import loop as loop_module
from demands.pipeline.grouping import known_groups
from demands.pipeline.persist import persist_batch
from demands.models import Demand, DemandGroup

from .conftest import REFERENCE, record
from .test_consume_loop import make_loop

pytestmark = pytest.mark.django_db(transaction=True)


def store(*ids: str, content: str = REFERENCE["content"]):
    with transaction.atomic():  # as the consume loop does: the outer transaction commits
        return persist_batch([record({**REFERENCE, "id": i, "content": content}, offset=n) for n, i in enumerate(ids)])


def group_queries(queries) -> list[str]:
    return [q["sql"] for q in queries if "demands_demandgroup" in q["sql"] and not q["sql"].startswith("UPDATE")]


def test_a_known_group_costs_no_query_and_still_counts():
    store("1")
    group = DemandGroup.objects.get()
    assert known_groups.ids == {group.fingerprint: group.pk}
    with CaptureQueriesContext(connection) as queries:
        store("2", "3")
    assert group_queries(queries) == []
    group.refresh_from_db()
    assert group.count == 3
    assert set(Demand.objects.values_list("group_id", flat=True)) == {group.pk}


def test_a_rolled_back_batch_teaches_nothing():
    with pytest.raises(RuntimeError), transaction.atomic():
        persist_batch([record(REFERENCE)])
        raise RuntimeError("the batch fails after persisting")
    assert known_groups.ids == {}
    assert not DemandGroup.objects.exists()


def test_a_group_deleted_here_is_forgotten_and_made_again():
    store("1")
    DemandGroup.objects.all().delete()
    assert known_groups.ids == {}
    store("2")
    group = DemandGroup.objects.get()
    assert Demand.objects.get(message_id="2").group_id == group.pk


def test_a_group_deleted_elsewhere_fails_the_batch_once_and_the_consume_loop_retry_succeeds():
    store("1")
    with connection.cursor() as cursor:  # another process deletes it: no signal reaches this one
        cursor.execute("UPDATE demands_demand SET group_id = NULL")
        cursor.execute("DELETE FROM demands_demandgroup")
    with pytest.raises(IntegrityError):
        store("2")  # the stale id fails the foreign-key check at commit: nothing is stored
    assert not Demand.objects.filter(message_id="2").exists()

    loop, holder, _, _ = make_loop([[record({**REFERENCE, "id": "3"}, offset=7)]])
    loop.run()
    assert loop.totals["created"] == 1 and holder["consumer"].commits
    demand = Demand.objects.get(message_id="3")
    assert DemandGroup.objects.get().pk == demand.group_id


def test_the_cache_is_bounded():
    known_groups.limit, saved = 3, known_groups.limit
    try:
        for n in range(5):
            store(str(n), content=f"problem {chr(0x4e00 + n)}")
        assert 0 < len(known_groups.ids) <= 3
    finally:
        known_groups.limit = saved


def test_consume_loop_forgets_groups_after_a_failed_batch(monkeypatch):
    known_groups.ids["stale"] = 123
    calls = {"n": 0}
    real = loop_module.persist_batch

    def flaky(records):
        calls["n"] += 1
        if calls["n"] == 1:
            raise IntegrityError("insert or update on table violates foreign key constraint")
        assert "stale" not in known_groups.ids
        return real(records)

    monkeypatch.setattr(loop_module, "persist_batch", flaky)
    loop, _, _, _ = make_loop([[record(REFERENCE, offset=0)]])
    loop.run()
    assert calls["n"] == 2


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the COPY staging table is PostgreSQL's")
def test_the_staging_table_is_created_until_a_batch_that_made_it_commits():
    from demands.pipeline import persist as ingest

    with pytest.raises(RuntimeError), transaction.atomic():
        persist_batch([record(REFERENCE)])
        raise RuntimeError("rolled back: the temporary table goes with it")
    assert connection.connection not in ingest._sessions_with_staging
    store("1")
    assert connection.connection in ingest._sessions_with_staging
    store("2")  # no CREATE: the table is there
    assert Demand.objects.count() == 2
    ingest.forget_session_state()
    assert connection.connection not in ingest._sessions_with_staging
    store("3")  # created again if need be (IF NOT EXISTS)
    assert Demand.objects.count() == 3
