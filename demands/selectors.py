"""Every read a page, the API or the websocket needs: filters, search and keyset pagination.

Lists never COUNT(*) the whole table and never use OFFSET: a page is "the N newest before id X",
which an index on (filter, -id) answers in constant time however many millions of rows there are.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from urllib.parse import urlencode

from django.core.cache import cache
from django.db.models import Q, QuerySet

from .models import Demand, RejectedMessage, Status

MAX_FILTER_CHARS = 200


@dataclass(frozen=True, slots=True)
class DemandFilters:
    status: str = ""
    type: str = ""
    source: str = ""
    search: str = ""

    @classmethod
    def from_params(cls, params) -> "DemandFilters":
        """Build from a QueryDict or dict; unknown statuses are ignored rather than erroring."""

        def get(name: str) -> str:
            value = params.get(name) or ""
            return str(value).strip()[:MAX_FILTER_CHARS]

        status = get("status")
        if status not in Status.values:
            status = ""
        return cls(status=status, type=get("type"), source=get("source"), search=get("search") or get("q"))

    def apply(self, queryset: QuerySet) -> QuerySet:
        if self.status:
            queryset = queryset.filter(status=self.status)
        if self.type:
            queryset = queryset.filter(type=self.type)
        if self.source:
            queryset = queryset.filter(source=self.source)
        if self.search:
            queryset = queryset.filter(Q(content__icontains=self.search) | Q(message_id=self.search))
        return queryset

    def matches(self, row: dict) -> bool:
        """The same filter, applied to a broadcast row (see live.row_payload) instead of SQL."""
        if self.status and row["status"] != self.status:
            return False
        if self.type and row["type"] != self.type:
            return False
        if self.source and row["source"] != self.source:
            return False
        if self.search:
            needle = self.search.casefold()
            return needle in row["content"].casefold() or row["message_id"] == self.search
        return True

    @property
    def is_active(self) -> bool:
        return any(asdict(self).values())

    def query_string(self, **extra) -> str:
        params = {key: value for key, value in asdict(self).items() if value}
        params.update({key: value for key, value in extra.items() if value not in (None, "")})
        return urlencode(params)


@dataclass(slots=True)
class DemandPage:
    items: list[Demand]
    next_before: int | None  # cursor for the next (older) page, None on the last page
    is_first: bool


def demand_page(*, filters: DemandFilters, before: int | None = None, limit: int = 50) -> DemandPage:
    queryset = filters.apply(Demand.objects.all())
    if before is not None:
        queryset = queryset.filter(id__lt=before)
    items = list(queryset.order_by("-id")[: limit + 1])
    has_more = len(items) > limit
    items = items[:limit]
    return DemandPage(items=items, next_before=items[-1].pk if has_more else None, is_first=before is None)


def demands_after(*, filters: DemandFilters, after: int, limit: int) -> list[Demand]:
    """Demands newer than `after`, newest first: what a reconnecting page missed."""
    return list(filters.apply(Demand.objects.filter(id__gt=after)).order_by("-id")[:limit])


def demand_count(*, filters: DemandFilters, cap: int = 10_000) -> tuple[int, bool]:
    """Count matching demands, but stop at `cap` so a request never scans millions of rows.

    Returns (count, exact): exact is False when there are more than `cap`.
    """
    count = filters.apply(Demand.objects.all()).order_by()[: cap + 1].count()
    return (min(count, cap), count <= cap)


def demand_get(*, pk: int) -> Demand:
    return Demand.objects.get(pk=pk)


def demand_facets() -> dict[str, list[str]]:
    """Distinct types and sources for filter menus; cached, since DISTINCT scans an index."""
    facets = cache.get("demands:facets")
    if facets is None:
        facets = {
            "types": list(Demand.objects.order_by("type").values_list("type", flat=True).distinct()[:200]),
            "sources": list(Demand.objects.order_by("source").values_list("source", flat=True).distinct()[:200]),
        }
        cache.set("demands:facets", facets, 60)
    return facets


def rejected_page(*, before: int | None = None, limit: int = 50) -> tuple[list[RejectedMessage], int | None]:
    queryset = RejectedMessage.objects.all()
    if before is not None:
        queryset = queryset.filter(id__lt=before)
    items = list(queryset.order_by("-id")[: limit + 1])
    has_more = len(items) > limit
    items = items[:limit]
    return items, (items[-1].pk if has_more else None)
