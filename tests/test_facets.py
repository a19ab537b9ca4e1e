"""The filter menus' types and sources (demands/facets.py): distinct live values by a loose
index scan, the same SQL on PostgreSQL and SQLite, cached, bounded."""

import pytest
from django.core.cache import cache
from django.utils import timezone

from demands import facets
from demands.models import Demand
from demands.pipeline.persist import persist_batch

from .conftest import REFERENCE, record

pytestmark = pytest.mark.django_db


def store(*pairs):
    persist_batch([record({**REFERENCE, "id": f"f{n}", "type": type_, "source": source}, offset=n)
                   for n, (type_, source) in enumerate(pairs)])


def test_distinct_live_types_and_sources_sorted_without_archived_only_values(staff_client):
    store(("log_exception", "web_app"), ("user_feedback", "ios_app"), ("user_feedback", "web_app"), ("api_anomaly", "crm"),
          ("zz_old", "legacy"))
    Demand.objects.filter(type="zz_old").update(status="resolved", archived_at=timezone.now())
    assert facets.distinct_live("type") == ["api_anomaly", "log_exception", "user_feedback"]
    assert facets.distinct_live("source") == ["crm", "ios_app", "web_app"]
    assert facets.distinct_live("type", limit=2) == ["api_anomaly", "log_exception"]
    page = staff_client.get("/demands/?view=all").content.decode()
    assert '<option value="api_anomaly"' in page and '<option value="crm"' in page and "legacy" not in page


def test_facets_are_cached_and_nothing_stored_is_an_empty_menu(django_assert_num_queries):
    assert facets.demand_facets() == {"types": [], "sources": []}
    cache.clear()
    store(("log_exception", "web_app"))
    with django_assert_num_queries(2):
        assert facets.demand_facets() == {"types": ["log_exception"], "sources": ["web_app"]}
    with django_assert_num_queries(0):
        facets.demand_facets()


def test_only_the_two_columns_are_accepted():
    with pytest.raises(ValueError):
        facets.distinct_live("content; DROP TABLE demands_demand")
