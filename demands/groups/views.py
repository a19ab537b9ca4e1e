"""Pages of group triage: the grouped list (served inside the demand list, `grouped_context`),
a group's page, its triage, bulk actions and merge on selected groups, and unmerge. Thin: parse,
call `groups.services` / `groups.selectors`, redirect back with a message."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext, ngettext
from django.views.decorators.http import require_GET, require_POST

from .. import selectors as demand_selectors
from ..access import can_triage, staff_required
from ..models import DemandGroup, Priority, Status
from . import selectors, services

VIEW_SESSION_KEY = "demands_list_view"  # "groups" or "all": the user's last choice


def list_is_grouped(request: HttpRequest, filters) -> bool:
    """Groups or every message: `?view=` (remembered in the session), else the remembered choice,
    else groups as soon as some group holds more than one demand (DEMANDS_DEFAULT_VIEW="auto")."""
    choice = request.GET.get("view")
    if choice in ("groups", "all"):
        if request.session.get(VIEW_SESSION_KEY) != choice:
            request.session[VIEW_SESSION_KEY] = choice
    else:
        choice = request.session.get(VIEW_SESSION_KEY)
    if filters.tag or filters.group:  # a tag is a message's; ?group= asks for one group's messages
        return False
    if choice in ("groups", "all"):
        return choice == "groups"
    default = getattr(settings, "DEMANDS_DEFAULT_VIEW", "auto")
    return default == "groups" or (default == "auto" and selectors.groups_exist_with_repeats())


def _page_number(request: HttpRequest) -> int:
    value = request.GET.get("gpage", "")
    return int(value) if value.isdigit() else 1


def count_label(count: int, exact: bool, *, grouped: bool) -> str:
    """"23 groups", "1,000+ demands": a count that stops at a cap says so."""
    shown = f"{count:,}"
    if not exact:
        return (gettext("%(n)s+ groups") if grouped else gettext("%(n)s+ demands")) % {"n": shown}
    if grouped:
        return ngettext("%(n)s group", "%(n)s groups", count) % {"n": shown}
    return ngettext("%(n)s demand", "%(n)s demands", count) % {"n": shown}


def toggle_context(filters, *, grouped: bool, count: tuple[int, bool] | None) -> dict:
    """What `_view_toggle.html` needs: both views' links with the filters, and the result count —
    or, when counting needs a query of its own (a full first page), where the page fetches it
    after it has loaded (`result_count`), so a slow count never holds the rows back."""
    view = "groups" if grouped else "all"
    return {
        "toggle_groups_query": filters.query_string(view="groups"),
        "toggle_all_query": filters.query_string(view="all"),
        "result_label": count_label(*count, grouped=grouped) if count else "",
        "result_count_url": "" if count else f"{reverse('demands:result-count')}?{filters.query_string(view=view)}",
    }


@require_GET
@staff_required
def result_count(request: HttpRequest) -> HttpResponse:
    """The list's "1,000+ demands" / "23 groups", for the page that asked after loading."""
    filters = demand_selectors.DemandFilters.from_params(request.GET, user=request.user)
    grouped = request.GET.get("view") == "groups"
    if grouped:
        count = selectors.capped_count(selectors.groups_filtered(filters=filters))
    else:
        count = demand_selectors.demand_count(filters=filters, cap=selectors.COUNT_CAP)
    return render(request, "demands/_result_count.html", {"result_label": count_label(*count, grouped=grouped)})


def grouped_context(request: HttpRequest, filters) -> dict:
    """What `_group_rows.html` needs, for the demand list in grouped mode."""
    sort = request.GET.get("group_sort", "")
    page = selectors.group_page(filters=filters, sort=sort, page=_page_number(request), with_count=False)
    for group in page.items:
        group.spark_points = selectors.sparkline_points(group.sparkline)
        group.spark_total = sum(group.sparkline)

    def query(**extra) -> str:
        return filters.query_string(view="groups", **extra)

    return {
        **toggle_context(filters, grouped=True, count=None if page.count is None else (page.count, page.count_is_exact)),
        "group_page": page,
        "group_sort": page.sort,
        "group_query": query(group_sort=sort, gpage=page.page),
        "group_sorts": [(key, label, query(group_sort=key if key != "last_seen" else "")) for key, label in _sort_labels()],
        "group_next_query": query(group_sort=sort, gpage=page.page + 1) if page.has_next else "",
        "group_previous_query": query(group_sort=sort, gpage=page.page - 1) if page.has_previous else "",
        "group_statuses": [(value, Status(value).label) for value in services.GROUP_STATUSES],
    }


def _sort_labels():
    return [("last_seen", gettext("Last seen")), ("first_seen", gettext("First seen")), ("count", gettext("Count")),
            ("priority", gettext("Priority"))]


@require_GET
@staff_required
def group_detail(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        group = selectors.group_get(pk=pk)
    except DemandGroup.DoesNotExist:
        raise Http404("No such group") from None
    selectors.attach_sparklines([group])
    group.spark_points = selectors.sparkline_points(group.sparkline, width=240, height=36)
    events = selectors.group_history(group=group)
    labels = {**dict(Status.choices), **dict(Priority.choices)}
    for event in events:  # status and priority values in the reader's language
        event.old_shown, event.new_shown = (labels.get(value, value) for value in (event.old_value, event.new_value))
    return render(request, "demands/group_detail.html", {
        "group": group,
        "events": events,
        "merged": selectors.merged_groups(group=group),
        "statuses": [(value, Status(value).label) for value in services.GROUP_STATUSES],
        "priorities": Priority.choices,
        "staff": demand_selectors.staff_users(),
        "teams": demand_selectors.team_list(),
        "can_triage": can_triage(request.user),
        "nav": "demands",
    })


def _changes(request: HttpRequest) -> dict | None:
    """status / priority / assignee / team from a form; None (with a message) when one is unknown."""
    changes: dict = {}
    if status := request.POST.get("status", ""):
        changes["status"] = status
    if priority := request.POST.get("priority", ""):
        changes["priority"] = priority
    assignee_value = request.POST.get("assignee", "")
    if assignee_value == "me":
        changes["assignee"] = request.user
    elif assignee_value == "none":
        changes["assignee"] = None
    elif assignee_value:
        changes["assignee"] = demand_selectors.staff_user_find(value=assignee_value) if assignee_value.isdigit() else None
        if changes["assignee"] is None:
            messages.error(request, gettext("No such staff member."))
            return None
    team_value = request.POST.get("team", "")
    if team_value == "none":
        changes["team"] = None
    elif team_value:
        changes["team"] = demand_selectors.team_find(value=team_value) if team_value.isdigit() else None
        if changes["team"] is None:
            messages.error(request, gettext("No such team."))
            return None
    return changes


def _report(request: HttpRequest, result: services.GroupResult) -> None:
    messages.success(request, gettext("Changed %(groups)d group(s) and %(members)d demand(s) in them.")
                     % {"groups": len(result.groups), "members": result.members})
    for what, reason in list(result.failed.items())[:10]:
        messages.error(request, f"{what}: {reason}")


@require_POST
@staff_required
def group_triage(request: HttpRequest, pk: int) -> HttpResponse:
    group = DemandGroup.objects.filter(pk=pk).first()
    if group is None:
        raise Http404("No such group")
    changes = _changes(request)
    if changes == {}:
        messages.warning(request, gettext("Choose a status, a priority, an assignee or a team to apply."))
    elif changes is not None:
        try:
            _report(request, services.group_triage(group=group, actor=request.user, **changes))
        except (PermissionDenied, services.services.TriageError) as exc:
            messages.error(request, str(exc))
    return redirect("demands:group-detail", pk=pk)


def _back(request: HttpRequest) -> HttpResponse:
    query = request.POST.get("return_query", "")
    return redirect(reverse("demands:list") + (f"?{query}" if query else ""))


@require_POST
@staff_required
def group_bulk(request: HttpRequest) -> HttpResponse:
    """Selected groups: apply a triage change to each, or (action=merge) merge them into the one
    with the most demands."""
    ids = [int(value) for value in request.POST.getlist("groups") if value.isdigit()][: services.BULK_MAX_GROUPS + 1]
    if not ids:
        messages.warning(request, gettext("Select at least one group first."))
        return _back(request)
    try:
        if request.POST.get("action") == "merge":
            groups = selectors.groups_find(ids=ids)
            if len(groups) < 2:
                raise services.services.TriageError(gettext("Select at least two groups to merge."))
            target = max(groups, key=lambda g: (g.count, -g.pk))
            services.group_merge(target=target, sources=[g for g in groups if g.pk != target.pk], actor=request.user)
            messages.success(request, gettext("Merged %(n)d group(s) into #%(pk)s “%(title)s”.")
                             % {"n": len(groups) - 1, "pk": target.pk, "title": target.title[:80]})
        else:
            changes = _changes(request)
            if changes == {}:
                messages.warning(request, gettext("Choose a status, a priority or an assignee to apply."))
            elif changes is not None:
                _report(request, services.group_bulk_triage(group_ids=ids, actor=request.user, **changes))
    except (PermissionDenied, services.services.TriageError) as exc:
        messages.error(request, str(exc))
    return _back(request)


@require_POST
@staff_required
def group_unmerge(request: HttpRequest, pk: int) -> HttpResponse:
    group = DemandGroup.objects.filter(pk=pk).first()
    if group is None:
        raise Http404("No such group")
    target = group.merged_into_id
    try:
        services.group_unmerge(group=group, actor=request.user)
    except (PermissionDenied, services.services.TriageError) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, gettext("Unmerged #%(pk)s “%(title)s”.") % {"pk": group.pk, "title": group.title[:80]})
    return redirect("demands:group-detail", pk=target or pk)
