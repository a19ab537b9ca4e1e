"""`{% sla_badge demand %}`: a demand's SLA on the detail page ("due in 12 min", overdue in red);
the markup is list_rows.sla_badge, the list's own."""

from django import template

from .. import list_rows

register = template.Library()


@register.simple_tag
def sla_badge(demand, detail: bool = False):
    return list_rows.sla_badge(demand, detail=detail)
