"""The list page's filter chips: one removable chip for every active filter, those without a control
on the page included (a group, an assignee or team id from a link, a saved view or the API)."""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.translation import gettext as _
from django.utils.translation import pgettext

from .models import DemandGroup, Priority, Status, Team
from .selectors import DemandFilters, staff_user_find

GROUP_TITLE_CHARS = 40


@dataclass(frozen=True)
class FilterChip:
    name: str  # the query parameter
    label: str  # what is filtered ("Status")
    value: str  # how ("New")
    remove_query: str  # the page's query without this filter (the sort kept)


def _choice_label(choices, value: str) -> str:
    return str(dict(choices).get(value, value))


def _assignee_text(filters: DemandFilters) -> str:
    if filters.assignee == "me":
        return _("Me")
    if filters.assignee == "none":
        return _("Nobody")
    user = staff_user_find(value=filters.assignee)
    return user.get_username() if user is not None else f"#{filters.assignee}"


def _team_text(filters: DemandFilters) -> str:
    if filters.team == "mine":
        return _("My teams")
    if filters.team == "none":
        return pgettext("team filter", "None")
    team = Team.objects.filter(pk=int(filters.team)).first()
    return team.name if team is not None else f"#{filters.team}"


def _group_text(filters: DemandFilters) -> str:
    group = DemandGroup.objects.filter(pk=int(filters.group)).only("title").first()
    if group is None:
        return f"#{filters.group}"
    title = group.title if len(group.title) <= GROUP_TITLE_CHARS else group.title[: GROUP_TITLE_CHARS - 1] + "…"
    return f"#{filters.group} {title}"


def filter_chips(*, filters: DemandFilters) -> list[FilterChip]:
    """The active filters in the order of the filter bar; at most one small query each for the
    filters named by id (an assignee, a team, a group)."""
    texts = {
        "status": lambda: _choice_label(Status.choices, filters.status),
        "priority": lambda: _choice_label(Priority.choices, filters.priority),
        "type": lambda: filters.type,
        "source": lambda: filters.source,
        "assignee": lambda: _assignee_text(filters),
        "team": lambda: _team_text(filters),
        "group": lambda: _group_text(filters),
        "tag": lambda: filters.tag,
        "date_from": lambda: filters.date_from,
        "date_to": lambda: filters.date_to,
        "search": lambda: f"“{filters.search}”",
    }
    labels = {
        "status": _("Status"), "priority": _("Priority"), "type": _("Type"), "source": _("Source"),
        "assignee": _("Assignee"), "team": _("Team"), "group": _("Group"), "tag": _("Tag"),
        "date_from": _("From"), "date_to": _("To"), "search": _("Search"),
    }
    chips = []
    for name, text in texts.items():
        if not getattr(filters, name):
            continue
        chips.append(FilterChip(
            name=name, label=labels[name], value=text(), remove_query=filters.with_changes(**{name: ""}).query_string()
        ))
    return chips


def clear_query(*, filters: DemandFilters) -> str:
    """The query with every filter cleared and the sort kept."""
    return DemandFilters(sort=filters.sort).query_string()
