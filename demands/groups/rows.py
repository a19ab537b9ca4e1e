"""The grouped list's rows as HTML, built in Python like the demand list's (demands/list_rows.py
says why; the words and URL shapes of a language are shared from there). The table around the
rows stays in templates/demands/_group_rows.html."""

from __future__ import annotations

from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import ngettext

from .. import list_rows
from ..list_rows import escape

TITLE_CHARS = 200


def group_row(group, *, can_triage: bool, w=None) -> str:
    w = w or list_rows.words()
    pk = group.pk
    head, tail = w.group_url
    select = (f'<input type="checkbox" name="groups" value="{pk}" form="group-bulk-form" '
              f'aria-label="{escape(w.select_group % {"pk": pk})}">') if can_triage else ""
    spark_total = getattr(group, "spark_total", 0)
    spark_label = ngettext("%(n)s in the last 24 hours", "%(n)s in the last 24 hours", spark_total) % {"n": spark_total}
    if group.priority:
        priority = escape(group.priority)
        priority = f'<span class="badge priority-{priority}">{w.priority.get(group.priority, priority)}</span>'
    else:
        priority = '<span class="muted">—</span>'
    status = escape(group.status)
    status_cell = f'<span class="badge status-{status}">{w.status.get(group.status, status)}</span>'
    if group.regressed_at and group.status != "resolved":
        _iso, at, _title = list_rows.local_times(group.regressed_at)
        title = w.regression_title % {"at": at[:16]}
        status_cell += f' <span class="badge regression" title="{escape(title)}">{w.regression}</span>'
    text = list_rows.truncated(group.title, TITLE_CHARS)
    cells = [
        f'<tr id="group-{pk}" data-group="{pk}">',
        f'<td class="select">{select}</td>',
        f'<td class="mono count-cell">{group.count}</td>',
        '<td class="spark-cell"><svg class="spark" width="96" height="20" viewBox="0 0 96 20" role="img" '
        f'aria-label="{escape(spark_label)}"><polyline points="{escape(getattr(group, "spark_points", ""))}" fill="none" '
        'stroke="currentColor" stroke-width="1.5" stroke-linejoin="round"/></svg></td>',
        f"<td>{priority}</td>",
        f"<td>{status_cell}</td>",
        f'<td><span class="badge type">{escape(group.type)}</span></td>',
        f'<td class="content"><a href="{head}{pk}{tail}">{escape(text)}</a> '
        f'<a class="muted" href="{w.list_url}?group={pk}&amp;view=all">{w.messages}</a></td>',
        f'<td class="source">{escape(group.source)}</td>',
        f'<td class="assignee">{list_rows.assignee_cell(group)}</td>',
    ]
    for seen in (group.first_seen, group.last_seen):
        iso, text, title = list_rows.local_times(seen)
        cells.append(f'<td class="time"><time data-relative datetime="{iso}" title="{escape(title)}">{text[:16]}</time></td>')
    cells.append("</tr>")
    return "".join(cells)


def group_rows(groups, *, can_triage: bool) -> SafeString:
    w = list_rows.words()
    return mark_safe("".join(group_row(group, can_triage=can_triage, w=w) for group in groups))
