"""A search's first page and capped count in one walk (demands/search_pages.py): the same rows,
cursor and count as demand_page + demand_count, in two queries however many match."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from demands import search_pages, selectors
from demands.pipeline.persist import persist_batch

from .conftest import REFERENCE, record

pytestmark = pytest.mark.django_db


@pytest.fixture
def demands():
    persist_batch([record({**REFERENCE, "id": f"s{n}", "content": "支付失败 timeout" if n % 3 else "页面加载太慢"}, offset=n)
                   for n in range(40)])


@pytest.mark.parametrize(("search", "limit", "cap"), [("支付", 5, 10), ("支付", 5, 1000), ("timeout", 50, 1000), ("页面", 20, 5),
                                                      ("nothing-like-this", 5, 10)])
def test_same_page_cursor_and_count_as_the_two_queries(demands, search, limit, cap):
    filters = selectors.DemandFilters.from_params({"search": search})
    assert search_pages.applies(filters, None)
    with CaptureQueriesContext(connection) as queries:
        page, count = search_pages.first_page_and_count(filters=filters, limit=limit, cap=cap)
    assert len(queries) <= 2
    expected = selectors.demand_page(filters=filters, before=None, limit=limit)
    assert [d.pk for d in page.items] == [d.pk for d in expected.items]
    assert page.next_cursor == expected.next_cursor and page.is_first
    assert count == selectors.demand_count(filters=filters, cap=cap)


def test_only_first_pages_of_newest_first_searches(demands):
    assert not search_pages.applies(selectors.DemandFilters.from_params({}), None)
    assert not search_pages.applies(selectors.DemandFilters.from_params({"search": "支付", "sort": "priority"}), None)
    assert not search_pages.applies(selectors.DemandFilters.from_params({"search": "支付"}), "123")


def test_the_list_page_and_the_api_show_the_search_count(demands, staff_client):
    page = staff_client.get("/demands/?view=all&search=支付").content.decode()
    assert page.count('<tr id="demand-') == 26 and "26" in page
    data = staff_client.get("/api/demands/?search=支付&limit=10").json()
    assert (data["count"], data["count_is_exact"], len(data["results"])) == (26, True, 10) and data["next"]
