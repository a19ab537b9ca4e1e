"""`{% sla_badge demand %}`: a demand's SLA on the list and the detail page ("due in 12 min", overdue in red)."""

from django import template
from django.utils import timezone

from ..models import SlaState

register = template.Library()


@register.inclusion_tag("demands/sla/_badge.html")
def sla_badge(demand, detail: bool = False):
    due = demand.sla_due_at
    now = timezone.now()
    return {
        "demand": demand,
        "state": demand.sla_state,
        "state_label": SlaState(demand.sla_state).label if demand.sla_state in SlaState.values else "",
        "due": due,
        "overdue": due is not None and due <= now,
        "detail": detail,
    }
