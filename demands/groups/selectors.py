"""Reads of the grouped list: groups filtered like demands, sorted, paged (bounded), counted with
a cap, and the hourly counts of the last 24 hours drawn as sparklines.

Groups are far fewer than demands, so a page is an OFFSET into at most LIST_MAX_ROWS groups (the
count stops there too: "1,000+"), sorted by last seen, first seen, count or priority.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Q, QuerySet
from django.utils import timezone

from ..field_filters import apply_shared
from ..models import DemandGroup, GroupEvent, GroupHour, priority_rank
from ..pipeline.grouping import hour_of

COUNT_CAP = 1000  # counts on pages stop here ("1,000+"), as the API's stop at 10,000
LIST_MAX_ROWS = 1000
PAGE_SIZE = 50
GROUP_SORTS = ("last_seen", "first_seen", "count", "priority")
SPARK_HOURS = 24


def groups_filtered(*, filters) -> QuerySet:
    """Unmerged groups matching a list's DemandFilters on the fields a group has: status,
    priority, assignee, team, type, source, search (title, or #id) and dates (seen in the range)."""
    queryset = DemandGroup.objects.filter(merged_into__isnull=True)
    queryset = apply_shared(queryset, filters)
    if filters.group:
        queryset = queryset.filter(pk=int(filters.group))
    if filters.date_from:
        queryset = queryset.filter(last_seen__gte=filters._day_start(filters.date_from))
    if filters.date_to:
        queryset = queryset.filter(first_seen__lt=filters._day_start(filters.date_to) + timedelta(days=1))
    if filters.search:
        needle = filters.search.lstrip("#")
        match = Q(title__icontains=filters.search)
        if needle.isdigit():
            match |= Q(pk=int(needle))
        queryset = queryset.filter(match)
    return queryset


def _ordered(queryset: QuerySet, sort: str) -> QuerySet:
    if sort == "first_seen":
        return queryset.order_by("-first_seen", "-id")
    if sort == "count":
        return queryset.order_by("-count", "-last_seen", "-id")
    if sort == "priority":  # set priorities by rank, then groups without one (index group_priority)
        return queryset.alias(rank=priority_rank()).order_by("rank", "-last_seen", "-id")
    return queryset.order_by("-last_seen", "-id")


@dataclass
class GroupPage:
    items: list[DemandGroup]
    page: int
    has_next: bool
    count: int | None
    count_is_exact: bool
    sort: str

    @property
    def has_previous(self) -> bool:
        return self.page > 1


def group_page(*, filters, sort: str = "", page: int = 1, per_page: int = PAGE_SIZE, with_count: bool = True) -> GroupPage:
    """One page of groups (pages stop after LIST_MAX_ROWS groups), with a capped count and each
    group's `sparkline` (SPARK_HOURS hourly counts, oldest first). `with_count=False`: the count
    only when this page shows it all (else None: the page asks for it separately)."""
    sort = sort if sort in GROUP_SORTS else "last_seen"
    last_page = max(1, LIST_MAX_ROWS // per_page)
    page = min(max(page, 1), last_page)
    queryset = groups_filtered(filters=filters)
    start = (page - 1) * per_page
    items = list(_ordered(queryset, sort).select_related("assignee", "team")[start:start + per_page + 1])
    has_next = len(items) > per_page and page < last_page
    items = items[:per_page]
    if page == 1 and len(items) < per_page:
        count, exact = len(items), True
    elif with_count:
        count, exact = capped_count(queryset)
    else:
        count, exact = None, False
    attach_sparklines(items)
    return GroupPage(items=items, page=page, has_next=has_next, count=count, count_is_exact=exact, sort=sort)


def capped_count(queryset: QuerySet, cap: int | None = None) -> tuple[int, bool]:
    """(count, exact): the count stops at `cap` so a page never scans everything to say it."""
    cap = COUNT_CAP if cap is None else cap
    count = queryset.order_by()[: cap + 1].count()
    return min(count, cap), count <= cap


def attach_sparklines(groups: list[DemandGroup], *, now=None) -> None:
    """`group.sparkline`: arrivals per hour over the last SPARK_HOURS hours, from GroupHour."""
    end = hour_of(now or timezone.now())
    start = end - timedelta(hours=SPARK_HOURS - 1)
    series = {group.pk: [0] * SPARK_HOURS for group in groups}
    for group_id, hour, count in GroupHour.objects.filter(group_id__in=series, hour__gte=start).values_list("group_id", "hour", "count"):
        index = int((hour - start).total_seconds() // 3600)
        if 0 <= index < SPARK_HOURS:
            series[group_id][index] += count
    for group in groups:
        group.sparkline = series[group.pk]


def sparkline_points(counts: list[int], *, width: int = 96, height: int = 20) -> str:
    """The `points` of an SVG polyline drawing `counts` (the highest touches the top)."""
    if not counts:
        return ""
    top = max(counts) or 1
    step = width / max(len(counts) - 1, 1)
    return " ".join(f"{i * step:.1f},{height - 1 - (height - 2) * n / top:.1f}" for i, n in enumerate(counts))


def groups_exist_with_repeats() -> bool:
    """Whether the grouped view says more than the list: some group holds more than one demand."""
    return DemandGroup.objects.filter(count__gt=1, merged_into__isnull=True).exists()


def group_get(*, pk: int) -> DemandGroup:
    return DemandGroup.objects.select_related("assignee", "team", "merged_into").get(pk=pk)


def group_history(*, group: DemandGroup) -> list[GroupEvent]:
    return list(group.events.select_related("actor").order_by("id"))


def merged_groups(*, group: DemandGroup) -> list[DemandGroup]:
    return list(group.merged_groups.order_by("pk"))


def groups_find(*, ids: list[int]) -> list[DemandGroup]:
    return list(DemandGroup.objects.filter(pk__in=ids).order_by("pk"))
