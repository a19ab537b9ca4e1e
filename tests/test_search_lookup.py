"""Search is a case-insensitive substring match that PostgreSQL's pg_trgm index can serve."""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from demands.models import Demand
from demands.selectors import DemandFilters

from demands.pipeline.persist import persist_batch

from .conftest import REFERENCE, record
from .test_views import make_demands

pytestmark = pytest.mark.django_db


def found(search: str) -> set[str]:
    return set(DemandFilters.from_params({"search": search}).apply(Demand.objects.all()).values_list("content", flat=True))


def test_search_matches_substrings_in_any_case_and_takes_wildcards_literally():
    contents = ["TimeoutError in checkout", "支付完成后订单状态一直显示待支付", "error rate 50% on /api", "error rate 500 on /api",
                "user_id missing", "userXid missing", r"path C:\tmp\x"]
    for n, content in enumerate(contents):
        make_demands(1, id=f"s{n}", content=content)
    assert found("timeout") == {"TimeoutError in checkout"}
    assert found("TIMEOUTERROR IN") == {"TimeoutError in checkout"}
    assert found("订单状态") == {"支付完成后订单状态一直显示待支付"}
    assert found("50%") == {"error rate 50% on /api"}  # % is a character, not "anything"
    assert found("user_id") == {"user_id missing"}  # _ is a character, not "any one"
    assert found(r"C:\tmp") == {r"path C:\tmp\x"}
    assert found("nothing like it") == set()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the pg_trgm index is PostgreSQL's")
def test_the_search_query_can_use_the_trigram_index():
    """Django's icontains wrote UPPER(content) LIKE UPPER(…), which no index on content serves:
    every search for a rare word read the whole table."""
    queryset = DemandFilters.from_params({"search": "timeout"}).apply(Demand.objects.all()).order_by()
    sql = str(queryset.query)
    assert "ILIKE" in sql and "UPPER(" not in sql
    with transaction.atomic(), connection.cursor() as cursor:
        # A small test table: leave the planner only the plans an index on content could give.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
        plan = Demand.objects.filter(content__search_contains="timeout").order_by().explain()
        old_plan = Demand.objects.filter(content__icontains="timeout").order_by().explain()
    assert "demand_content_trgm" in plan
    assert "demand_content_trgm" not in old_plan


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the pg_trgm index is PostgreSQL's")
def test_a_search_too_short_for_a_trigram_stays_an_upper_like_unless_it_has_no_case():
    assert "UPPER(" in str(Demand.objects.filter(content__search_contains="ab").query)
    assert "ILIKE" in str(Demand.objects.filter(content__search_contains="abc").query)
    # Chinese and digits have no case: a plain LIKE matches the same rows, five times faster.
    for caseless in ("支付", "支付宝", "500"):
        sql = str(Demand.objects.filter(content__search_contains=caseless).query)
        assert " LIKE " in sql and "UPPER(" not in sql and "ILIKE" not in sql, sql


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the pg_trgm index is PostgreSQL's")
def test_a_caseless_search_of_three_characters_uses_the_trigram_index():
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
        plan = Demand.objects.filter(content__search_contains="订单状态").order_by().explain()
    assert "demand_content_trgm" in plan


def test_caseless_searches_find_what_case_insensitive_ones_did():
    contents = ["支付失败 ABC", "错误 500 on /api", "50% 完成", "ǅemo 支付"]
    for n, content in enumerate(contents):
        make_demands(1, id=f"c{n}", content=content)
    for search in ("支付", "500", "50%", "0 o", "完成"):
        assert found(search) == set(Demand.objects.filter(content__icontains=search).values_list("content", flat=True)), search
    assert found("abc") == {"支付失败 ABC"}  # has case: still case-insensitive


def test_the_api_counts_a_single_page_result_without_a_count_query(staff_client):
    persist_batch([record({**REFERENCE, "id": f"r{i}", "content": "rare words here"}, offset=i) for i in range(3)])
    with CaptureQueriesContext(connection) as queries:
        response = staff_client.get("/api/demands/?search=rare+words")
    assert response.json()["count"] == 3 and response.json()["count_is_exact"] is True
    assert not [q for q in queries if "COUNT(" in q["sql"]]
    persist_batch([record({**REFERENCE, "id": f"m{i}", "content": "many rows"}, offset=i) for i in range(60)])
    body = staff_client.get("/api/demands/?search=many&limit=50").json()
    assert body["count"] == 60 and body["count_is_exact"] and body["next"]
    assert staff_client.get(body["next"]).json()["count"] == 60
