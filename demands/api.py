"""The JSON API for staff sessions: read demands, triage them, read their history.

Thin like the pages: parse, call a selector or the same services the pages use, answer JSON.
Errors are JSON with an "error" message and the HTTP status that says what went wrong.
"""

from __future__ import annotations

import json

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import search_pages, selectors, services
from .archive import services as archive_services
from .models import Demand
from .sla.selectors import sla_json
from .access import api_staff_required

API_MAX_LIMIT = 500
API_COUNT_CAP = 10_000  # counts stop here rather than scan millions of rows


def _json(data, status: int = 200) -> JsonResponse:
    return JsonResponse(data, status=status, json_dumps_params={"ensure_ascii": False})


def _error(message: str, status: int, **extra) -> JsonResponse:
    return _json({"error": message, **extra}, status=status)


def _user_json(user) -> dict | None:
    return {"id": user.pk, "username": user.get_username(), "name": user.get_full_name()} if user else None


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
        "category": demand.category,
        "extra": demand.extra,
        "assignee": _user_json(demand.assignee),
        "team": {"id": demand.team.pk, "name": demand.team.name} if demand.team else None,
        "group": demand.group_id,
        "duplicate_of": demand.duplicate_of_id,
        "version": demand.version,
        "kafka": {
            "topic": demand.kafka_topic,
            "partition": demand.kafka_partition,
            "offset": demand.kafka_offset,
            "timestamp": demand.kafka_timestamp.isoformat() if demand.kafka_timestamp else None,
        },
        "received_at": demand.received_at.isoformat(),
        "updated_at": demand.updated_at.isoformat(),
        "archived_at": demand.archived_at.isoformat() if demand.archived_at else None,
        "sla": sla_json(demand),  # {"policy", "respond_by", "resolve_by", "due_at", "state"}, or null
    }


def event_json(event) -> dict:
    return {
        "id": event.pk,
        "kind": event.kind,
        "actor": _user_json(event.actor),
        "rule": {"id": event.rule_id, "name": event.rule.name} if event.rule_id and event.rule else None,
        "sla_policy": {"id": event.sla_policy_id, "name": event.sla_policy.name} if event.sla_policy_id and event.sla_policy else None,
        "old": event.old_value,
        "new": event.new_value,
        "body": event.body,
        "at": event.created_at.isoformat(),
    }


def _int(value, default=None):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


@require_GET
@api_staff_required
def demand_list(request: HttpRequest) -> JsonResponse:
    problems = selectors.DemandFilters.errors(request.GET)
    if problems:
        return _error("; ".join(problems), 400)
    filters = selectors.DemandFilters.from_params(request.GET, user=request.user)
    limit = _int(request.GET["limit"]) if "limit" in request.GET else 50
    if limit is None or not 1 <= limit <= API_MAX_LIMIT:
        return _error(f"limit must be an integer from 1 to {API_MAX_LIMIT}", 400)
    before = request.GET.get("before") or None
    if before is not None and not before.replace(":", "").isdigit():
        return _error("before must be the cursor from a previous page's next link", 400)
    if search_pages.applies(filters, before):  # rows and count in one walk of the content
        page, (count, exact) = search_pages.first_page_and_count(filters=filters, limit=limit, cap=API_COUNT_CAP)
    else:
        page = selectors.demand_page(filters=filters, before=before, limit=limit)
        if before is None and not page.next_cursor:
            count, exact = len(page.items), True  # the whole result is this page: no count query (a rare search)
        else:
            count, exact = selectors.demand_count(filters=filters, cap=API_COUNT_CAP)
    next_url = None
    if page.next_cursor:
        next_url = request.build_absolute_uri("?" + filters.query_string(before=page.next_cursor, limit=limit))
    return _json({"count": count, "count_is_exact": exact, "next": next_url, "results": [demand_json(d) for d in page.items]})


def _get_demand(pk: int):
    try:
        return selectors.demand_get(pk=pk)
    except Demand.DoesNotExist:
        return None


@require_http_methods(["GET", "PATCH"])
@api_staff_required
def demand_detail(request: HttpRequest, pk: int) -> JsonResponse:
    """GET one demand; PATCH {"status", "priority", "assignee", "team", "archived", "version"} to
    triage it.

    assignee/team: a user id or username / a team id or name, or null to clear. "archived": true
    archives a closed demand now, false restores an archived one (after the other fields, so
    {"status": "resolved", "archived": true} resolves and archives). "version" (from a GET) makes
    the change fail with 409 if someone changed the demand meanwhile.
    """
    demand = _get_demand(pk)
    if demand is None:
        return _error("not found", 404)
    if request.method == "GET":
        return _json(demand_json(demand))
    try:
        body = json.loads(request.body or b"{}")
    except RecursionError:
        return _error("body is not valid JSON: nested too deeply", 400)
    except ValueError as exc:
        return _error(f"body is not valid JSON: {exc}", 400)
    if not isinstance(body, dict) or not body.keys() & {"status", "priority", "assignee", "team", "archived"}:
        return _error("send a JSON object with at least one of status, priority, assignee, team, archived", 400)
    version = body.get("version")
    if version is not None and _int(version) is None:
        return _error("version must be an integer", 400)
    if "archived" in body and not isinstance(body["archived"], bool):
        return _error("archived must be true (archive a closed demand) or false (restore it)", 400)
    try:
        with transaction.atomic():  # all of it or none: archiving an open demand undoes the fields too
            fields = _patch_fields(body)
            expected = _int(version)
            if fields:
                demand = services.demand_update(demand=demand, actor=request.user, expected_version=expected, **fields)
                expected = None  # the version this request's own change made
            if body.get("archived") is True and demand.archived_at is None:
                archive_services.demand_archive(demand=demand, actor=request.user, expected_version=expected)
            elif body.get("archived") is False and demand.archived_at is not None:
                archive_services.demand_restore(demand=demand, actor=request.user, expected_version=expected)
    except PermissionDenied as exc:
        return _error(str(exc) or "you cannot change demands", 403)
    except services.ConflictError as exc:
        return _error(str(exc), 409)
    except services.TriageError as exc:
        return _error(str(exc), 400)
    return _json(demand_json(selectors.demand_get(pk=pk)))


class _BadRequest(services.TriageError):
    pass


def _patch_fields(body: dict) -> dict:
    """The PATCH body as demand_update's keywords; a person or team that does not exist is a 400."""
    fields = {}
    if "assignee" in body:
        fields["assignee"] = selectors.staff_user_find(value=body["assignee"])
        if body["assignee"] is not None and fields["assignee"] is None:
            raise _BadRequest(f"no active staff member {body['assignee']!r}")
    if "team" in body:
        fields["team"] = selectors.team_find(value=body["team"])
        if body["team"] is not None and fields["team"] is None:
            raise _BadRequest(f"no team {body['team']!r}")
    if "priority" in body:
        fields["priority"] = str(body["priority"])
    if "status" in body:
        fields["status"] = str(body["status"])
    return fields


@require_GET
@api_staff_required
def demand_history(request: HttpRequest, pk: int) -> JsonResponse:
    demand = _get_demand(pk)
    if demand is None:
        return _error("not found", 404)
    return _json({"results": [event_json(event) for event in selectors.demand_history(demand=demand)]})


@require_POST
@api_staff_required
def demand_comment(request: HttpRequest, pk: int) -> JsonResponse:
    demand = _get_demand(pk)
    if demand is None:
        return _error("not found", 404)
    try:
        body = json.loads(request.body or b"{}")
    except RecursionError:
        return _error("body is not valid JSON: nested too deeply", 400)
    except ValueError as exc:
        return _error(f"body is not valid JSON: {exc}", 400)
    if not isinstance(body, dict) or not isinstance(body.get("body"), str):
        return _error('send {"body": "comment text"}', 400)
    try:
        event = services.demand_comment(demand=demand, body=body["body"], actor=request.user)
    except PermissionDenied as exc:
        return _error(str(exc) or "you cannot change demands", 403)
    except services.TriageError as exc:
        return _error(str(exc), 400)
    return _json(event_json(event), status=201)
