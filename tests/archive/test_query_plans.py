"""On PostgreSQL the list's hot queries use the partial indexes (live demands only): the plan
is read with sequential scans discouraged, so the answer does not depend on the table's size."""

import pytest
from django.db import connection

from demands import selectors
from demands.models import Demand

from .conftest import ingest

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="query plans are PostgreSQL's"),
]


def plan(params: dict) -> str:
    queryset = selectors.DemandFilters.from_params(params).apply(Demand.objects.all()).order_by("-id")[:51]
    sql, args = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_bitmapscan = off")
        cursor.execute("ANALYZE demands_demand")
        cursor.execute(f"EXPLAIN {sql}", args)
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.mark.parametrize(("params", "index"), [
    ({}, "demand_live_id"),
    ({"status": "new"}, "demand_status_id"),
    ({"priority": "urgent"}, "demand_priority_id"),
    ({"source": "web_app"}, "demand_source_id"),
    ({"archived": "only"}, "demand_archived_id"),
])
def test_list_queries_use_the_partial_indexes(params, index):
    # Filters that select few rows, as in production (where the whole-table walk would be long).
    ingest(5, priority="urgent")
    common = ingest(400, source="other_app")
    Demand.objects.filter(pk__in=[d.pk for d in common]).update(status="triaged")
    # Most of them archived, newest ones included: a walk of the primary key would step over them,
    # so the partial index wins whatever earlier tests' rolled-back rows left in each index (run
    # after tests/test_groups.py … tests/sla, the plan took the primary key with 5 archived).
    Demand.objects.filter(pk__in=[d.pk for d in common[-300:]]).update(archived_at="2025-01-01T00:00:00Z", status="resolved")
    text = plan(params)
    assert index in text, text


@pytest.mark.parametrize(("sort", "index"), [
    ("", "group_last_seen"), ("count", "group_count"), ("first_seen", "group_first_seen"), ("priority", "group_priority"),
])
def test_grouped_list_sorts_read_an_index_not_every_group(sort, index):
    from demands.groups import selectors as group_selectors
    from demands.models import DemandGroup

    ingest(30)
    queryset = group_selectors._ordered(group_selectors.groups_filtered(filters=selectors.DemandFilters.from_params({})), sort)
    sql, args = queryset.select_related("assignee", "team")[:51].query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute(f"ANALYZE {DemandGroup._meta.db_table}")
        cursor.execute(f"EXPLAIN {sql}", args)
        text = "\n".join(row[0] for row in cursor.fetchall())
    assert f"Index Scan using {index}" in text, text


def test_sessions_run_without_jit():
    """JIT compiled the facets' old DISTINCT and left the session's list queries twice as slow
    (settings: `-c jit=off` unless DATABASE_URL says otherwise)."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone()[0] == "off"
