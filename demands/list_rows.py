"""A demand's list row and its SLA badge as HTML, built in Python: the list page's rows, every
live row the consumers send, and the badge on the detail page all come from here (and the pieces
the grouped list's rows share: groups/rows.py).

Why not a template: the Django template engine cost about 1.2 ms a row (17 translations, 3 URL
reversals, a dozen variable lookups each localised and escaped, an inclusion tag for the badge),
so 50 rows were ~60 ms of the list page's ~70 ms (bench/README.md, "Archive scale"). Here the
words of a language and the URL shape are looked up once (`_Words`, cached per language and
script prefix) and a row is a few string joins; every value from a demand is escaped.

Markup changes go here; `templates/demands/list.html` calls `{% demand_rows page.items %}` and
`tests/test_list_rows.py` pins the row's structure in both languages.
"""

from __future__ import annotations

import functools
import html
from dataclasses import dataclass

from django.urls import get_script_prefix, reverse
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import Truncator
from django.utils.timesince import timesince, timeuntil
from django.utils.translation import get_language, gettext, pgettext

from .models import Priority, SlaState, Status

# What a row reads, and all the list page loads of a demand (selectors.demand_page(only=…)): the
# rest (extra, rule_changes, Kafka coordinates, the SLA policy) cost ~3 ms a page to load unread.
FIELDS = ("id", "priority", "status", "type", "content", "tags", "category", "source", "received_at", "sla_state",
          "sla_due_at", "assignee", "team", "assignee__username", "team__name")
CONTENT_CHARS = 300  # as the list always truncated (truncatechars:300)


def truncated(text: str | None, chars: int) -> str:
    """The `truncatechars` filter's result; a text that fits (nearly all) skips Truncator's walk."""
    text = text or ""
    return Truncator(text).chars(chars) if len(text) > chars else text


def escape(value) -> str:
    """django.utils.html.escape's output, without its lazy-string check (a few hundred calls a page)."""
    return html.escape(str(value))


_PK = 2_147_483_647  # stands for the primary key in the reversed detail URL


@dataclass(frozen=True)
class _Words:
    """What every row of one language shares: labels, the select box's label, the URL shape."""

    priority: dict
    status: dict
    sla_state: dict
    select_demand: str
    overdue: str
    ago: str
    due: str
    in_: str
    detail_url: tuple[str, str]
    select_group: str
    regression: str
    regression_title: str
    messages: str
    group_url: tuple[str, str]
    list_url: str


@functools.lru_cache(maxsize=32)
def _words(language: str | None, script_prefix: str) -> _Words:
    head, _, tail = reverse("demands:detail", args=[_PK]).partition(str(_PK))
    return _Words(
        priority={value: escape(str(label)) for value, label in Priority.choices},
        status={value: escape(str(label)) for value, label in Status.choices},
        sla_state={value: escape(str(label)) for value, label in SlaState.choices},
        select_demand=gettext("Select demand %(pk)s"),
        overdue=pgettext("sla", "overdue"),
        ago=gettext("%(since)s ago"),
        due=pgettext("sla", "due"),
        in_=gettext("in %(until)s"),
        detail_url=(head, tail),
        select_group=gettext("Select group %(pk)s"),
        regression=gettext("Regression"),
        regression_title=gettext("Regression: reopened by a new demand on %(at)s"),
        messages=gettext("messages"),
        group_url=tuple(reverse("demands:group-detail", args=[_PK]).partition(str(_PK))[::2]),
        list_url=reverse("demands:list"),
    )


def words() -> _Words:
    return _words(get_language(), get_script_prefix())


def assignee_cell(item) -> str:
    """A demand's or group's assignee and team ("—" for nobody), escaped, for a `<td>`."""
    assignee = item.assignee if item.assignee_id else None
    team = item.team if item.team_id else None
    who = escape(assignee.get_username()) if assignee else ""
    if team:
        who += f' <span class="muted">{escape(team.name)}</span>'
    return who if assignee or team else '<span class="muted">—</span>'


def local_times(value) -> tuple[str, str, str]:
    """`value` in the current time zone as (ISO 8601, "Y-m-d H:i:s", "Y-m-d H:i:s T"), as the
    `date` filter gave them."""
    local = timezone.localtime(value)
    text = local.strftime("%Y-%m-%d %H:%M:%S")
    return local.isoformat(), text, f"{text} {local.tzname() or ''}".rstrip()


def sla_badge(demand, *, detail: bool = False, now=None, w: _Words | None = None) -> SafeString:
    """The SLA cell: "due in 12 minutes", "overdue 3 minutes ago" (red), or the state's label."""
    state = demand.sla_state
    if not state:
        return mark_safe("")
    w = w or words()
    due = demand.sla_due_at
    now = now or timezone.now()
    overdue = due is not None and due <= now
    label = w.sla_state.get(state, "")
    parts = [f'<span class="sla sla-{escape(state)}{" sla-overdue" if overdue else ""}" data-sla-state="{escape(state)}">']
    if due is not None:
        iso, _text, title = local_times(due)
        if overdue:
            lead, relative = w.overdue, w.ago % {"since": escape(timesince(due, now))}
        else:
            lead, relative = w.due, w.in_ % {"until": escape(timeuntil(due, now))}
        parts.append(f'{lead} <time data-relative datetime="{iso}" title="{escape(title)}">{relative}</time>')
        if detail:
            parts.append(f" · {label}")
    else:
        parts.append(label)
    parts.append("</span>")
    return mark_safe("".join(parts))


def row(demand, *, is_new: bool = False, now=None, w: _Words | None = None) -> SafeString:
    """One `<tr>` of the demand list (the live stream's rows are the same)."""
    w = w or words()
    pk = demand.pk
    head, tail = w.detail_url
    url = f"{head}{pk}{tail}"
    content = truncated(demand.content, CONTENT_CHARS)
    tags = demand.tags or []
    category = demand.category
    extra = ""
    if tags or category:
        extra = ('<div class="tags">' + (f'<span class="tag category">{escape(category)}</span>' if category else "")
                 + "".join(f'<span class="tag">{escape(tag)}</span>' for tag in tags) + "</div>")
    who = assignee_cell(demand)
    iso, text, title = local_times(demand.received_at)
    new = ' class="is-new"' if is_new else ""
    priority, status = escape(demand.priority), escape(demand.status)
    return mark_safe(
        f'<tr id="demand-{pk}" data-id="{pk}" data-href="{url}"{new}>'
        f'<td class="select"><input type="checkbox" name="ids" value="{pk}" form="bulk-form" aria-label="{escape(w.select_demand % {"pk": pk})}"></td>'
        f'<td class="mono"><a href="{url}">{pk}</a></td>'
        f'<td><span class="badge priority-{priority}">{w.priority.get(demand.priority, priority)}</span></td>'
        f'<td><span class="badge status-{status}">{w.status.get(demand.status, status)}</span></td>'
        f'<td><span class="badge type">{escape(demand.type)}</span></td>'
        f'<td class="content"><a href="{url}">{escape(content)}</a>{extra}</td>'
        f'<td class="source">{escape(demand.source)}</td>'
        f'<td class="assignee">{who}</td>'
        f'<td class="time"><time data-relative datetime="{iso}" title="{escape(title)}">{text}</time></td>'
        f'<td class="sla-cell">{sla_badge(demand, now=now, w=w)}</td>'
        "</tr>"
    )


def rows(demands, *, is_new: bool = False) -> SafeString:
    now, w = timezone.now(), words()
    return mark_safe("".join(row(demand, is_new=is_new, now=now, w=w) for demand in demands))
