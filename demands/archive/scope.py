"""Which demands a list shows: the live ones (default), live and archived (`include`), or only
archived (`only`) — for SQL (`apply`) and for broadcast rows (`matches`), like the other filters."""

from __future__ import annotations

from django.db.models import QuerySet

MODES = ("include", "only")


def clean(value: str) -> str:
    """The mode from a request parameter: "" (live only), "include" or "only"."""
    return value if value in MODES else ""


def errors(params) -> list[str]:
    value = params.get("archived")
    if value and value not in MODES:
        return [f"unknown archived {value!r}; allowed: {', '.join(MODES)} (absent: live demands only)"]
    return []


def apply(queryset: QuerySet, mode: str) -> QuerySet:
    if mode == "include":
        return queryset
    # Spelled as the partial indexes' condition (models.LIVE), so the planner can use them.
    return queryset.filter(archived_at__isnull=mode != "only")


def matches(mode: str, row: dict) -> bool:
    if mode == "include":
        return True
    return bool(row.get("archived")) == (mode == "only")
