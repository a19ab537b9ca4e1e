"""Pages, htmx partials and the JSON read API. Thin: parse the request, call a selector, render."""

from __future__ import annotations

import csv
import json
import zoneinfo
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, QueryDict, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import selectors, services
from .access import staff_required
from .models import TRANSITIONS, Demand, Notification, Priority, SavedView, Status, Team, UserPreference



def _int_param(request: HttpRequest, name: str, default: int | None = None) -> int | None:
    try:
        return int(request.GET[name])
    except (KeyError, ValueError):
        return default


VIEW_TABS = [
    ("all", _("All"), {}),
    ("mine", _("Assigned to me"), {"assignee": "me"}),
    ("teams", _("My teams"), {"team": "mine"}),
    ("unassigned", _("Unassigned"), {"assignee": "none"}),
]


@require_GET
@staff_required
def demand_list(request: HttpRequest) -> HttpResponse:
    filters = selectors.DemandFilters.from_params(request.GET, user=request.user)
    before = request.GET.get("before") or None
    page = selectors.demand_page(filters=filters, before=before, limit=settings.DEMANDS_PAGE_SIZE)
    tabs = []
    for key, label, params in VIEW_TABS:
        tab_filters = filters.with_changes(assignee=params.get("assignee", ""), team=params.get("team", ""))
        active = (filters.assignee, filters.team) == (params.get("assignee", ""), params.get("team", ""))
        tabs.append({"key": key, "label": label, "query": tab_filters.query_string(), "active": active})
    context = {
        "page": page,
        "filters": filters,
        "tabs": tabs,
        "facets": selectors.demand_facets(),
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
        "nav": "demands",
    }
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
        "nav": "demands",
    }


def _version(request: HttpRequest) -> int | None:
    try:
        return int(request.POST["version"])
    except (KeyError, ValueError):
        return None


def _triage_action(request: HttpRequest, pk: int, action) -> HttpResponse:
    """Run one service call for a form post; report errors as messages; back to the demand."""
    demand = get_object_or_404(Demand, pk=pk)
    try:
        action(demand)
    except PermissionDenied as exc:
        messages.error(request, str(exc) or gettext("You cannot change demands."))
    except services.TriageError as exc:
        messages.error(request, str(exc))
    return redirect("demands:detail", pk=pk)


def _user_or_none(value: str):
    if not value:
        return None
    return get_user_model().objects.filter(pk=value, is_active=True, is_staff=True).first() if value.isdigit() else None


def _team_or_none(value: str):
    return Team.objects.filter(pk=value).first() if value and value.isdigit() else None


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
    original = Demand.objects.filter(pk=value).first() if value.isdigit() else None
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


@require_GET
@staff_required
def demand_export(request: HttpRequest) -> StreamingHttpResponse:
    """The filtered list as CSV, streamed in keyset chunks (no limit, constant memory)."""
    filters = selectors.DemandFilters.from_params(request.GET, user=request.user)

    class Echo:
        def write(self, value):
            return value

    writer = csv.writer(Echo())
    header = ["pk", "id", "source", "type", "priority", "status", "assignee", "team", "tags", "timestamp", "received_at", "content"]

    def rows():
        yield "\ufeff"  # BOM: spreadsheet programs then read the UTF-8 (Chinese) correctly
        yield writer.writerow(header)
        for demand in selectors.demand_iter(filters=filters):
            yield writer.writerow([csv_safe(value) for value in (
                demand.pk, demand.message_id, demand.source, demand.type, demand.priority, demand.status,
                demand.assignee.get_username() if demand.assignee else "", demand.team.name if demand.team else "",
                ",".join(demand.tags or []), demand.occurred_at.isoformat(), demand.received_at.isoformat(), demand.content,
            )])

    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
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
    name = request.POST.get("name", "").strip()[:100]
    query = request.POST.get("return_query", "")
    filters = selectors.DemandFilters.from_params(QueryDict(query), user=request.user)
    if not name:
        messages.error(request, gettext("Give the view a name."))
    elif not filters.params():
        messages.error(request, gettext("Choose some filters first: a view without filters is just the list."))
    else:
        SavedView.objects.update_or_create(user=request.user, name=name, defaults={"query": urlencode(filters.params())})
        messages.success(request, gettext("Saved the view “%(name)s”.") % {"name": name})
    return _back_to_list(request)


@require_POST
@staff_required
def saved_view_delete(request: HttpRequest, pk: int) -> HttpResponse:
    SavedView.objects.filter(user=request.user, pk=pk).delete()
    return _back_to_list(request)


@require_GET
@staff_required
def notification_list(request: HttpRequest) -> HttpResponse:
    return render(request, "demands/notifications.html", {
        "notifications": Notification.objects.filter(user=request.user).select_related("demand")[:100],
        "nav": "notifications",
    })


@require_POST
@staff_required
def notification_read(request: HttpRequest) -> HttpResponse:
    ids = [int(v) for v in request.POST.getlist("ids") if v.isdigit()] or None
    services.notification_mark_read(user=request.user, notification_ids=ids)
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return redirect(target)
    return redirect("demands:notifications")


@require_GET
@staff_required
def group_list(request: HttpRequest) -> HttpResponse:
    offset = max(_int_param(request, "offset", 0) or 0, 0)
    groups = selectors.group_list(limit=100, offset=offset)
    return render(request, "demands/groups.html", {"groups": groups, "offset": offset, "next_offset": offset + 100 if len(groups) == 100 else None, "nav": "groups"})


@require_http_methods(["GET", "POST"])
@staff_required
def preferences(request: HttpRequest) -> HttpResponse:
    """Language and time zone for this user (every device); the topbar switch posts here too."""
    preference, _created = UserPreference.objects.get_or_create(user=request.user)
    if request.method == "POST":
        language = request.POST.get("language", preference.language)
        time_zone = request.POST.get("time_zone", preference.time_zone)
        if language and language not in dict(settings.LANGUAGES):
            messages.error(request, gettext("Unknown language."))
        elif time_zone and time_zone not in zoneinfo.available_timezones():
            messages.error(request, gettext("Unknown time zone."))
        else:
            preference.language, preference.time_zone = language, time_zone
            preference.save()
            translation.activate(language or settings.LANGUAGE_CODE)
            messages.success(request, gettext("Preferences saved."))
        target = request.POST.get("next", "")
        if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
            return redirect(target)
        return redirect("demands:preferences")
    return render(request, "demands/preferences.html", {
        "preference": preference, "time_zones": settings.COMMON_TIME_ZONES, "nav": "preferences",
    })
