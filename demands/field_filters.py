"""The list filters a demand and a group share, by the field names both models have: status,
priority, type, source, assignee ("none" or a resolved id) and team ("none" or the resolved ids).
`selectors.DemandFilters.apply` and `groups.selectors.groups_filtered` both start here."""

from __future__ import annotations

from django.db.models import QuerySet


def apply_shared(queryset: QuerySet, filters) -> QuerySet:
    """`filters` is a `selectors.DemandFilters` (its assignee/team already resolved for the user)."""
    for name in ("status", "priority", "type", "source"):
        if getattr(filters, name):
            queryset = queryset.filter(**{name: getattr(filters, name)})
    if filters.assignee == "none":
        queryset = queryset.filter(assignee__isnull=True)
    elif filters.assignee_id is not None:
        queryset = queryset.filter(assignee_id=filters.assignee_id)
    if filters.team == "none":
        queryset = queryset.filter(team__isnull=True)
    elif filters.team_ids is not None:
        queryset = queryset.filter(team_id__in=filters.team_ids)
    return queryset
