"""SLA reads for lists and the API: the `sla` filter (breaching soon / breached), the due-time sort,
and a demand's SLA as JSON. Hooked into `demands.selectors.DemandFilters` with a few lines."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone as dt_timezone

from django.db.models import Q, QuerySet
from django.utils import timezone

from ..models import CLOSED_STATUSES, Demand, SlaState
from .models import SlaPolicy

FILTERS = ("breaching_soon", "breached")
# "Breaching soon": at risk by its policy, or due within this much.
SOON = timedelta(hours=1)


def clean(value: str) -> str:
    return value if value in FILTERS else ""


def errors(params) -> list[str]:
    value = params.get("sla")
    return [f"unknown sla {value!r}; allowed: {', '.join(FILTERS)}"] if value and value not in FILTERS else []


def apply(queryset: QuerySet, value: str, *, now: datetime | None = None) -> QuerySet:
    if not value:
        return queryset
    now = now or timezone.now()
    queryset = queryset.exclude(status__in=CLOSED_STATUSES)
    if value == "breached":
        return queryset.filter(Q(sla_state=SlaState.BREACHED) | Q(sla_due_at__lte=now))
    return queryset.filter(sla_due_at__gt=now).exclude(sla_state=SlaState.BREACHED).filter(
        Q(sla_state=SlaState.AT_RISK) | Q(sla_due_at__lte=now + SOON)
    )


def row_matches(row: dict, value: str, *, now: datetime | None = None) -> bool:
    """The same filter on a broadcast row (live.row_payload's sla_state / sla_due_at)."""
    now = now or timezone.now()
    due = datetime.fromisoformat(row["sla_due_at"]) if row.get("sla_due_at") else None
    if row.get("status") in CLOSED_STATUSES:
        return False
    if value == "breached":
        return row.get("sla_state") == SlaState.BREACHED or (due is not None and due <= now)
    return (due is not None and due > now and row.get("sla_state") != SlaState.BREACHED
            and (row.get("sla_state") == SlaState.AT_RISK or due <= now + SOON))


def due_page(queryset: QuerySet, cursor: str | None, limit: int) -> tuple[list[Demand], str | None]:
    """Demands with an open target, soonest due first (overdue at the top); keyset on (due, id)
    served by the partial index demand_sla_due. Cursor: "<due in µs since 1970>:<id>". Returns (items, next cursor)."""
    queryset = queryset.filter(sla_due_at__isnull=False)
    micros, _, pk = (cursor or "").partition(":")
    if micros.isdigit() and pk.isdigit():
        due = _EPOCH + timedelta(microseconds=int(micros))
        queryset = queryset.filter(Q(sla_due_at__gt=due) | Q(sla_due_at=due, id__gt=int(pk)))
    items = list(queryset.order_by("sla_due_at", "id")[: limit + 1])
    has_more = len(items) > limit
    items = items[:limit]
    next_cursor = f"{_micros(items[-1].sla_due_at)}:{items[-1].pk}" if has_more else None
    return items, next_cursor


_EPOCH = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)


def _micros(moment: datetime) -> int:
    delta = moment - _EPOCH
    return delta.days * 86_400_000_000 + delta.seconds * 1_000_000 + delta.microseconds


def sla_json(demand: Demand) -> dict | None:
    if demand.sla_policy_id is None and not demand.sla_state:
        return None
    policy = demand.sla_policy
    return {
        "policy": {"id": policy.pk, "name": policy.name} if policy else None,
        "respond_by": demand.respond_by.isoformat() if demand.respond_by else None,
        "resolve_by": demand.resolve_by.isoformat() if demand.resolve_by else None,
        "due_at": demand.sla_due_at.isoformat() if demand.sla_due_at else None,
        "state": demand.sla_state or None,
    }


def policy_list() -> list[SlaPolicy]:
    return list(SlaPolicy.objects.select_related("match_team").prefetch_related("steps"))
