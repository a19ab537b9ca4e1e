"""Pages, htmx partials and the JSON read API. Thin: parse the request, call a selector, render."""

from __future__ import annotations

import json
from functools import wraps

from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET

from . import selectors
from .models import Demand, Status

API_MAX_LIMIT = 500


class StaffAuthenticationForm(AuthenticationForm):
    """Only staff may sign in: the dashboard holds other people's feedback and system internals."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "not_staff": _("This account has no access to the dashboard. Ask an administrator for staff access."),
    }

    def confirm_login_allowed(self, user):
        super().confirm_login_allowed(user)
        if not user.is_staff:
            raise forms.ValidationError(self.error_messages["not_staff"], code="not_staff")


def _is_staff(request: HttpRequest) -> bool:
    user = request.user
    return user.is_authenticated and user.is_active and user.is_staff


def staff_required(view):
    """Pages: anyone but active staff is sent to the login page."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not _is_staff(request):
            return redirect_to_login(request.get_full_path(), settings.LOGIN_URL)
        return view(request, *args, **kwargs)

    return wrapper


def api_staff_required(view):
    """API: a JSON 401/403 instead of a redirect, so clients see what went wrong."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return JsonResponse({"error": "authentication required"}, status=401)
        if not _is_staff(request):
            return JsonResponse({"error": "staff access required"}, status=403)
        return view(request, *args, **kwargs)

    return wrapper


def _int_param(request: HttpRequest, name: str, default: int | None = None) -> int | None:
    try:
        return int(request.GET[name])
    except (KeyError, ValueError):
        return default


@require_GET
@staff_required
def demand_list(request: HttpRequest) -> HttpResponse:
    filters = selectors.DemandFilters.from_params(request.GET)
    before = _int_param(request, "before")
    page = selectors.demand_page(filters=filters, before=before, limit=settings.DEMANDS_PAGE_SIZE)
    context = {
        "page": page,
        "filters": filters,
        "facets": selectors.demand_facets(),
        "statuses": Status.choices,
        "newest_id": page.items[0].pk if page.items else 0,
        "ws_query": filters.query_string(),
        "next_query": filters.query_string(before=page.next_before) if page.next_before else "",
        "first_query": filters.query_string(),
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
    extra_json = json.dumps(demand.extra, ensure_ascii=False, indent=2, sort_keys=True)
    return render(request, "demands/detail.html", {"demand": demand, "extra_json": extra_json, "nav": "demands"})


@require_GET
@staff_required
def rejected_list(request: HttpRequest) -> HttpResponse:
    items, next_before = selectors.rejected_page(before=_int_param(request, "before"), limit=settings.DEMANDS_PAGE_SIZE)
    return render(
        request, "demands/rejected_list.html", {"items": items, "next_before": next_before, "nav": "rejected"}
    )


# -- JSON API -------------------------------------------------------------------------------------

def demand_json(demand: Demand) -> dict:
    return {
        "pk": demand.pk,
        "id": demand.message_id,
        "source": demand.source,
        "type": demand.type,
        "content": demand.content,
        "timestamp": demand.occurred_at.isoformat(),
        "priority": demand.priority,
        "status": demand.status,
        "tags": demand.tags,
        "extra": demand.extra,
        "kafka": {
            "topic": demand.kafka_topic,
            "partition": demand.kafka_partition,
            "offset": demand.kafka_offset,
            "timestamp": demand.kafka_timestamp.isoformat() if demand.kafka_timestamp else None,
        },
        "received_at": demand.received_at.isoformat(),
    }


@require_GET
@api_staff_required
def api_demand_list(request: HttpRequest) -> JsonResponse:
    filters = selectors.DemandFilters.from_params(request.GET)
    if request.GET.get("status") and not filters.status:
        return JsonResponse(
            {"error": f"unknown status {request.GET['status']!r}", "allowed": Status.values}, status=400
        )
    limit = _int_param(request, "limit") if "limit" in request.GET else 50
    if limit is None or not 1 <= limit <= API_MAX_LIMIT:
        return JsonResponse({"error": f"limit must be an integer from 1 to {API_MAX_LIMIT}"}, status=400)
    before = _int_param(request, "before")
    if "before" in request.GET and before is None:
        return JsonResponse({"error": "before must be a demand pk (integer)"}, status=400)
    page = selectors.demand_page(filters=filters, before=before, limit=limit)
    count, exact = selectors.demand_count(filters=filters)
    next_url = None
    if page.next_before:
        next_url = request.build_absolute_uri("?" + filters.query_string(before=page.next_before, limit=limit))
    return JsonResponse(
        {
            "count": count,
            "count_is_exact": exact,
            "next": next_url,
            "results": [demand_json(demand) for demand in page.items],
        },
        json_dumps_params={"ensure_ascii": False},
    )


@require_GET
@api_staff_required
def api_demand_detail(request: HttpRequest, pk: int) -> JsonResponse:
    try:
        demand = selectors.demand_get(pk=pk)
    except Demand.DoesNotExist:
        return JsonResponse({"error": "not found"}, status=404)
    return JsonResponse(demand_json(demand), json_dumps_params={"ensure_ascii": False})
