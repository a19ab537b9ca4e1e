"""The first page of a search and its capped count in one walk.

A list page shows its rows and how many match ("1,000+"). For most filters the count is an
index-only walk and costs little, but a search tests each demand's content: the page's rows and
then the count walked the same matches twice (15 ms each for a 2-character search over 1,000,000
live demands, bench/archive_scale.py). Here one walk collects up to `cap + 1` matching ids,
newest first — that is the count — and the page's rows are then fetched by primary key.

Only for the first page in the default (newest first) order; other pages and sorts keep
`selectors.demand_page` + `selectors.demand_count`.
"""

from __future__ import annotations

from .models import Demand
from .selectors import DemandFilters, DemandPage


def applies(filters: DemandFilters, before) -> bool:
    return bool(filters.search) and not filters.sort and before in (None, "")


def first_page_and_count(*, filters: DemandFilters, limit: int, cap: int, only=None) -> tuple[DemandPage, tuple[int, bool]]:
    """(the first page, (count, exact)) for a newest-first search; the count stops at `cap`.
    `only`: the fields the caller reads, as selectors.demand_page takes them."""
    ids = list(filters.apply(Demand.objects.all()).order_by("-id").values_list("id", flat=True)[: max(cap, limit) + 1])
    shown = ids[:limit]
    rows = Demand.objects.select_related("assignee", "team", *([] if only else ["sla_policy"])).filter(pk__in=shown)
    by_id = {demand.pk: demand for demand in (rows.only(*only) if only else rows)}
    items = [by_id[pk] for pk in shown if pk in by_id]  # one deleted meanwhile is left out
    next_cursor = str(items[-1].pk) if len(ids) > limit and items else None
    return DemandPage(items=items, next_cursor=next_cursor, is_first=True), (min(len(ids), cap), len(ids) <= cap)
