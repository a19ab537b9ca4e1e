"""Pages, htmx partials and the JSON read API. Thin: parse the request, call a selector, render."""

from __future__ import annotations

import csv
import json

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.handlers.asgi import ASGIRequest
from django.http import Http404, HttpRequest, HttpResponse, QueryDict, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import facets, filter_chips, list_rows, search_pages, selectors, services
from .outbound import follows
from .access import staff_required
from .groups import views as group_views
from .models import TRANSITIONS, Demand, Priority, Status


VIEW_TABS = [
    ("all", _("All"), {}),
    ("mine", _("Assigned to me"), {"assignee": "me"}),
    ("teams", _("My teams"), {"team": "mine"}),
    ("unassigned", _("Unassigned"), {"assignee": "none"}),
]


@require_GET
@staff_required
def demand_list(request: HttpRequest, grouped: bool | None = None) -> HttpResponse:
    filters = selectors.DemandFilters.from_params(request.GET, user=request.user)
    before = request.GET.get("before") or None
    if grouped is None:  # /groups/ asks for groups; /demands/ as chosen (demands/groups/views.py)
        grouped = group_views.list_is_grouped(request, filters)
    if grouped:  # no demand rows, so no live stream of them either (is_first False)
        page, count = selectors.DemandPage(items=[], next_cursor=None, is_first=False), None
    elif search_pages.applies(filters, before):  # rows and count in one walk of the content
        page, count = search_pages.first_page_and_count(filters=filters, limit=settings.DEMANDS_PAGE_SIZE, cap=1000,
                                                        only=list_rows.FIELDS)
    else:
        page = selectors.demand_page(filters=filters, before=before, limit=settings.DEMANDS_PAGE_SIZE, only=list_rows.FIELDS)
        # A count of its own (a full page) is fetched by the page after it loaded (groups/views.result_count).
        count = (len(page.items), True) if page.is_first and not page.next_cursor else None
    tabs = []
    for key, label, params in VIEW_TABS:
        tab_filters = filters.with_changes(assignee=params.get("assignee", ""), team=params.get("team", ""))
        active = (filters.assignee, filters.team) == (params.get("assignee", ""), params.get("team", ""))
        tabs.append({"key": key, "label": label, "query": tab_filters.query_string(), "active": active})
    context = {
        "page": page,
        "filters": filters,
        "tabs": tabs,
        "facets": facets.demand_facets(),
        "statuses": Status.choices,
        "priorities": Priority.choices,
        "staff": selectors.staff_users(),
        "teams": selectors.team_list(),
        "saved_views": selectors.saved_views(user=request.user),
        "can_triage": services.can_triage(request.user),
        "ws_query": filters.query_string(),
        "next_query": filters.query_string(before=page.next_cursor) if page.next_cursor else "",
        "first_query": filters.query_string(),
        "current_query": request.GET.urlencode(),
        "live_max_rows": settings.DEMANDS_LIVE_MAX_ROWS,
        "chips": filter_chips.filter_chips(filters=filters),
        "clear_query": filter_chips.clear_query(filters=filters),
        "nav": "groups" if grouped else "demands",
        "grouped": grouped,
    }
    context.update(group_views.grouped_context(request, filters) if grouped
                   else group_views.toggle_context(filters, grouped=False, count=count))
    template = "demands/list.html"
    if request.htmx and request.htmx.target == "demand-table":
        template += "#table"
    return render(request, template, context)


@require_GET
@staff_required
def demand_detail(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        demand = selectors.demand_get(pk=pk)
    except Demand.DoesNotExist:
        raise Http404("No such demand") from None
    return render(request, "demands/detail.html", _detail_context(request, demand))


def _detail_context(request: HttpRequest, demand: Demand) -> dict:
    return {
        "demand": demand,
        "events": selectors.demand_history(demand=demand),
        "extra_json": json.dumps(demand.extra, ensure_ascii=False, indent=2, sort_keys=True),
        "statuses": [(value, label) for value, label in Status.choices if value in TRANSITIONS[demand.status] and value != Status.DUPLICATE],
        "priorities": Priority.choices,
        "staff": selectors.staff_users(),
        "teams": selectors.team_list(),
        "can_triage": services.can_triage(request.user),
        "following": follows.is_following(user=request.user, demand=demand),
        "nav": "demands",
    }


def _version(request: HttpRequest) -> int | None:
    try:
        return int(request.POST["version"])
    except (KeyError, ValueError):
        return None


def _triage_action(request: HttpRequest, pk: int, action) -> HttpResponse:
    """Run one service call for a form post; report errors as messages; back to the demand."""
    demand = selectors.demand_find(pk=pk)
    if demand is None:
        raise Http404("No such demand")
    try:
        action(demand)
    except PermissionDenied as exc:
        messages.error(request, str(exc) or gettext("You cannot change demands."))
    except services.TriageError as exc:
        messages.error(request, str(exc))
    return redirect("demands:detail", pk=pk)


def _user_or_none(value: str):
    # Forms post ids; a username typed into a crafted form finds nobody, as before.
    return selectors.staff_user_find(value=value) if value.isdigit() else None


def _team_or_none(value: str):
    return selectors.team_find(value=value) if value.isdigit() else None


def _safe_next(request: HttpRequest) -> str | None:
    """The `next` target if it stays on this site (and on https when this request came over https)."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return None


@require_POST
@staff_required
def demand_status(request: HttpRequest, pk: int) -> HttpResponse:
    return _triage_action(request, pk, lambda demand: services.demand_change_status(
        demand=demand, status=request.POST.get("status", ""), actor=request.user, expected_version=_version(request)))


@require_POST
@staff_required
def demand_priority(request: HttpRequest, pk: int) -> HttpResponse:
    return _triage_action(request, pk, lambda demand: services.demand_set_priority(
        demand=demand, priority=request.POST.get("priority", ""), actor=request.user, expected_version=_version(request)))


@require_POST
@staff_required
def demand_assign(request: HttpRequest, pk: int) -> HttpResponse:
    assignee_value = request.POST.get("assignee", "")
    assignee = request.user if assignee_value == "me" else _user_or_none(assignee_value)
    if assignee_value not in ("", "me") and assignee is None:
        messages.error(request, gettext("No such staff member."))
        return redirect("demands:detail", pk=pk)
    return _triage_action(request, pk, lambda demand: services.demand_assign(
        demand=demand, assignee=assignee, team=_team_or_none(request.POST.get("team", "")), actor=request.user,
        expected_version=_version(request)))


@require_POST
@staff_required
def demand_comment(request: HttpRequest, pk: int) -> HttpResponse:
    return _triage_action(request, pk, lambda demand: services.demand_comment(
        demand=demand, body=request.POST.get("body", ""), actor=request.user))


@require_POST
@staff_required
def demand_duplicate(request: HttpRequest, pk: int) -> HttpResponse:
    value = request.POST.get("original", "").strip().lstrip("#")
    original = selectors.demand_find(pk=value)
    if original is None:
        messages.error(request, gettext("Name the demand this one duplicates by its number, e.g. 1234."))
        return redirect("demands:detail", pk=pk)
    return _triage_action(request, pk, lambda demand: services.demand_mark_duplicate(
        demand=demand, original=original, actor=request.user, expected_version=_version(request)))


def _back_to_list(request: HttpRequest) -> HttpResponse:
    query = request.POST.get("return_query", "")
    return redirect(reverse("demands:list") + (f"?{query}" if query else ""))


@require_POST
@staff_required
def demand_bulk(request: HttpRequest) -> HttpResponse:
    ids = [int(value) for value in request.POST.getlist("ids") if value.isdigit()]
    if len(set(ids)) > services.BULK_MAX_IDS:  # refused before any lookup: the list may be huge
        messages.error(request, gettext("Select at most %(max)d demands at once (you selected %(n)d).")
                       % {"max": services.BULK_MAX_IDS, "n": len(set(ids))})
        return _back_to_list(request)
    if not ids:
        messages.warning(request, gettext("Select at least one demand first."))
        return _back_to_list(request)
    status = request.POST.get("status", "")
    priority = request.POST.get("priority", "")
    assignee_value = request.POST.get("assignee", "")
    assign = assignee_value != ""
    assignee = None
    if assignee_value == "me":
        assignee = request.user
    elif assignee_value not in ("", "none"):
        assignee = _user_or_none(assignee_value)
        if assignee is None:
            messages.error(request, gettext("No such staff member."))
            return _back_to_list(request)
    if not (status or priority or assign):
        messages.warning(request, gettext("Choose a status, a priority or an assignee to apply."))
        return _back_to_list(request)
    try:
        result = services.demand_bulk_update(
            demand_ids=ids, actor=request.user, status=status or None, priority=priority or None, assign=assign, assignee=assignee
        )
    except PermissionDenied as exc:
        messages.error(request, str(exc))
        return _back_to_list(request)
    if result.changed:
        messages.success(request, gettext("Changed %(n)d demand(s).") % {"n": len(result.changed)})
    for pk, reason in list(result.failed.items())[:10]:
        messages.error(request, f"#{pk}: {reason}")
    return _back_to_list(request)


EXPORT_HEADER = ["pk", "id", "source", "type", "priority", "status", "assignee", "team", "tags", "timestamp", "received_at", "content"]


class _Echo:
    def write(self, value):
        return value


def _csv_lines(rows) -> str:
    """One chunk of selectors.EXPORT_COLUMNS tuples as CSV text, every cell defused (csv_safe)."""
    writer = csv.writer(_Echo())
    return "".join(writer.writerow([csv_safe(_cell(value)) for value in row]) for row in rows)


def _cell(value):
    if isinstance(value, list):  # tags
        return ",".join(value)
    if hasattr(value, "isoformat"):  # timestamps, ISO 8601 with their offset
        return value.isoformat()
    return value


# BOM: spreadsheet programs then read the UTF-8 (Chinese) correctly.
_EXPORT_HEAD = "\ufeff" + csv.writer(_Echo()).writerow(EXPORT_HEADER)


def _export_sync(filters: selectors.DemandFilters):
    yield _EXPORT_HEAD
    before = None
    while chunk := selectors.demand_export_chunk(filters=filters, before=before):
        yield _csv_lines(chunk)
        before = chunk[-1][0]


async def _export_async(filters: selectors.DemandFilters):
    # Under ASGI a sync iterator is read whole into a list before the first byte is sent (Django's
    # StreamingHttpResponse "must consume synchronous iterators"); an async one is sent as it goes.
    # Each chunk is fetched and rendered in the ORM's thread; at most one chunk is held at a time.
    yield _EXPORT_HEAD
    before = None
    fetch = sync_to_async(lambda before: _chunk_csv(filters, before))
    while True:
        text, before = await fetch(before)
        if before is None:
            return
        yield text


def _chunk_csv(filters: selectors.DemandFilters, before: int | None) -> tuple[str, int | None]:
    chunk = selectors.demand_export_chunk(filters=filters, before=before)
    return (_csv_lines(chunk), chunk[-1][0]) if chunk else ("", None)


@require_GET
@staff_required
def demand_export(request: HttpRequest) -> StreamingHttpResponse:
    """The filtered list as CSV, streamed in keyset chunks (no limit, constant memory).

    Under ASGI (daphne) an async iterator, so chunks go out as they are read; under WSGI a sync one
    (WSGI servers stream those, and would buffer an async one whole)."""
    filters = selectors.DemandFilters.from_params(request.GET, user=request.user)
    content = _export_async(filters) if isinstance(request, ASGIRequest) else _export_sync(filters)
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response = StreamingHttpResponse(content, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="demands-{stamp}.csv"'
    return response


def csv_safe(value) -> str:
    """Defuse spreadsheet formula injection: a cell starting with = + - @ (or tab/CR) is text."""
    text = "" if value is None else str(value)
    if text and text[0] in "=+-@\t\r":
        return "'" + text
    return text


@require_POST
@staff_required
def saved_view_create(request: HttpRequest) -> HttpResponse:
    filters = selectors.DemandFilters.from_params(QueryDict(request.POST.get("return_query", "")), user=request.user)
    try:
        view = services.saved_view_create(user=request.user, name=request.POST.get("name", ""), filter_params=filters.params())
    except services.TriageError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, gettext("Saved the view “%(name)s”.") % {"name": view.name})
    return _back_to_list(request)


@require_POST
@staff_required
def saved_view_delete(request: HttpRequest, pk: int) -> HttpResponse:
    services.saved_view_delete(user=request.user, saved_view_id=pk)
    return _back_to_list(request)


@require_GET
@staff_required
def notification_list(request: HttpRequest) -> HttpResponse:
    return render(request, "demands/notifications.html", {
        "notifications": selectors.notification_list(user=request.user, limit=100),
        "nav": "notifications",
    })


@require_POST
@staff_required
def notification_read(request: HttpRequest) -> HttpResponse:
    ids = [int(v) for v in request.POST.getlist("ids") if v.isdigit()] or None
    services.notification_mark_read(user=request.user, notification_ids=ids)
    return redirect(_safe_next(request) or "demands:notifications")


@require_http_methods(["GET", "POST"])
@staff_required
def preferences(request: HttpRequest) -> HttpResponse:
    """Language and time zone for this user (every device); the topbar switch posts here too."""
    if request.method == "POST":
        try:
            preference = services.preference_update(
                user=request.user, language=request.POST.get("language"), time_zone=request.POST.get("time_zone")
            )
        except services.TriageError as exc:
            messages.error(request, str(exc))
        else:
            translation.activate(preference.language or settings.LANGUAGE_CODE)
            messages.success(request, gettext("Preferences saved."))
        return redirect(_safe_next(request) or "demands:preferences")
    return render(request, "demands/preferences.html", {
        "preference": selectors.preference_get(user=request.user), "time_zones": settings.COMMON_TIME_ZONES,
        "nav": "preferences",
    })
