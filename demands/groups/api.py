"""`GET /api/groups/`: the grouped list as JSON, with the list's filters, sorted and counted (the
count stops at COUNT_CAP, as the demand API's stops at 10,000). Style of demands/api.py."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from ..access import api_staff_required
from ..selectors import DemandFilters
from . import selectors


def group_json(group) -> dict:
    return {
        "id": group.pk, "type": group.type, "source": group.source, "title": group.title, "count": group.count,
        "first_seen": group.first_seen.isoformat(), "last_seen": group.last_seen.isoformat(),
        "status": group.status, "priority": group.priority or None,
        "assignee": {"id": group.assignee.pk, "username": group.assignee.get_username()} if group.assignee else None,
        "team": {"id": group.team.pk, "name": group.team.name} if group.team else None,
        "regressed_at": group.regressed_at.isoformat() if group.regressed_at else None,
        "last_24h": group.sparkline,
    }


@require_GET
@api_staff_required
def group_list(request: HttpRequest) -> JsonResponse:
    params = request.GET.copy()
    sort = params.pop("sort", [""])[-1]  # the groups' own sorts, not the demands'
    problems = DemandFilters.errors(params)
    if sort and sort not in selectors.GROUP_SORTS:
        problems.append(f"unknown sort {sort!r}; allowed: {', '.join(selectors.GROUP_SORTS)}")
    page_value = request.GET.get("page", "1")
    if not page_value.isdigit() or int(page_value) < 1:
        problems.append("page must be a positive integer")
    if problems:
        return JsonResponse({"error": "; ".join(problems)}, status=400)
    filters = DemandFilters.from_params(params, user=request.user)
    page = selectors.group_page(filters=filters, sort=sort, page=int(page_value))
    next_url = None
    if page.has_next:
        query = params.copy()
        query["page"] = str(page.page + 1)
        if sort:
            query["sort"] = sort
        next_url = request.build_absolute_uri("?" + query.urlencode())
    return JsonResponse({"count": page.count, "count_is_exact": page.count_is_exact, "next": next_url,
                         "results": [group_json(g) for g in page.items]}, json_dumps_params={"ensure_ascii": False})
