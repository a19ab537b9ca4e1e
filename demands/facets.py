"""The filter menus' choices: the distinct types and sources of live demands.

`SELECT DISTINCT type FROM demands_demand` reads every row or index entry: 1.2 s a column with
6,000,000 demands, paid by the first page view after each cache expiry in every process (and on
PostgreSQL it left the session slower for a while afterwards: JIT, see settings). Here each
distinct value is one index probe instead — a loose index scan written as a recursive CTE ("the
smallest value greater than the last one") over the partial `(type, -id)` and `(source, -id)`
indexes of live demands — so the cost grows with the number of values, not of rows. The same SQL
runs on PostgreSQL and SQLite. Values only archived demands have are not offered (their filter
still works when typed into the URL or chosen from a chip).
"""

from __future__ import annotations

from django.core.cache import cache
from django.db import connection

from .models import Demand

MAX_VALUES = 200
CACHE_SECONDS = 60


def distinct_live(column: str, *, limit: int = MAX_VALUES) -> list[str]:
    """Distinct non-empty values of `column` ("type" or "source") among live demands, sorted."""
    if column not in ("type", "source"):
        raise ValueError(column)
    table = connection.ops.quote_name(Demand._meta.db_table)
    name = connection.ops.quote_name(column)
    sql = (
        f"WITH RECURSIVE walk(value) AS ("
        f" SELECT MIN({name}) FROM {table} WHERE archived_at IS NULL"
        f" UNION ALL"
        f" SELECT (SELECT MIN({name}) FROM {table} WHERE archived_at IS NULL AND {name} > walk.value)"
        f" FROM walk WHERE walk.value IS NOT NULL"
        f") SELECT value FROM walk WHERE value IS NOT NULL LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [limit])
        return [value for (value,) in cursor.fetchall() if value]


def demand_facets() -> dict[str, list[str]]:
    """Distinct types and sources for the filter menus; cached for a minute per process."""
    facets = cache.get("demands:facets")
    if facets is None:
        facets = {"types": distinct_live("type"), "sources": distinct_live("source")}
        cache.set("demands:facets", facets, CACHE_SECONDS)
    return facets
