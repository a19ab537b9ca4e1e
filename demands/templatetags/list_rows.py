"""`{% demand_rows page.items %}` and `{% group_rows group_page.items can_triage %}`: the lists'
rows, built by demands/list_rows.py and demands/groups/rows.py (not the template engine: see
list_rows for why)."""

from django import template

from .. import list_rows
from ..groups import rows as group_rows_html

register = template.Library()


@register.simple_tag
def demand_rows(demands):
    return list_rows.rows(demands)


@register.simple_tag
def group_rows(groups, can_triage):
    return group_rows_html.group_rows(groups, can_triage=bool(can_triage))
