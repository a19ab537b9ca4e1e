"""The HTTP ingest endpoint and the dead-letter work queue pages. Thin: parse, call intake.http / intake.dlq, render."""

from __future__ import annotations

import math

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.cache import patch_vary_headers
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from .. import schema
from ..access import staff_required
from ..login_throttle import client_address
from . import dlq, http as http_ingest, keys
from .keys import IngestRefused
from .models import RejectedMessage

DLQ_PERMISSION = "demands.change_rejectedmessage"
NOTE_MAX_CHARS = 2000


# -- POST /api/ingest/ ----------------------------------------------------------------------------

def _own_origin(request: HttpRequest) -> str:
    return f"{request.scheme}://{request.get_host()}"


def _allow_origin(response: HttpResponse, origin: str | None) -> HttpResponse:
    patch_vary_headers(response, ["Origin"])
    if origin:
        response["Access-Control-Allow-Origin"] = origin
        response["Access-Control-Expose-Headers"] = "Retry-After"
    return response


@csrf_exempt  # authenticated by API key, never by cookies: there is no session to forge requests with
def api_ingest(request: HttpRequest) -> HttpResponse:
    """POST one demand or an array of demands with a source API key; 202 once Kafka has them."""
    origin = request.headers.get("Origin")
    if request.method == "OPTIONS":  # CORS preflight: no key is sent with it
        if not origin or not keys.origin_allowed(origin, api_key=None, own_origin=_own_origin(request)):
            return _allow_origin(HttpResponse(status=403), None)
        response = _allow_origin(HttpResponse(status=204), origin)
        response["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response["Access-Control-Allow-Headers"] = "Authorization, Content-Type, X-Api-Key"
        response["Access-Control-Max-Age"] = "600"
        return response
    if request.method != "POST":
        response = JsonResponse({"error": "use POST (or OPTIONS for a CORS preflight)"}, status=405)
        response["Allow"] = "POST, OPTIONS"
        return response

    try:
        api_key = keys.api_key_authenticate(presented=keys.presented_key(request.headers))
    except IngestRefused as refused:
        response = JsonResponse({"error": refused.reason}, status=refused.status)
        response["WWW-Authenticate"] = 'Bearer realm="ingest"'
        # Let an allowed page read why (e.g. the widget shows "revoked key"); others learn nothing.
        readable = origin and keys.origin_allowed(origin, api_key=None, own_origin=_own_origin(request))
        return _allow_origin(response, origin if readable else None)
    if origin and not keys.origin_allowed(origin, api_key=api_key, own_origin=_own_origin(request)):
        # CORS alone only stops the browser from reading the answer; refuse the write here too.
        return _allow_origin(JsonResponse({"error": f"origin {origin} is not allowed for this API key"}, status=403), None)
    if keys.is_browser_use(api_key=api_key, origin=origin):
        # Before the key's bucket: one address must not spend the tokens of every visitor.
        wait = keys.address_limit_take(api_key=api_key, address=client_address(request))
        if wait is not None:
            response = JsonResponse({"error": "too many requests from this address with this key; retry later"}, status=429)
            response["Retry-After"] = str(math.ceil(wait))
            return _allow_origin(response, origin)

    too_big = JsonResponse({"error": f"body is larger than {settings.INGEST_MAX_BODY_BYTES} bytes"}, status=413)
    try:
        if int(request.headers.get("Content-Length") or 0) > settings.INGEST_MAX_BODY_BYTES:
            return _allow_origin(too_big, origin)
        body = request.body
    except (ValueError, RequestDataTooBig):
        return _allow_origin(too_big, origin)

    result = http_ingest.ingest_request(api_key=api_key, body=body)
    response = JsonResponse(result.body, status=result.status, json_dumps_params={"ensure_ascii": False})
    if result.retry_after:
        response["Retry-After"] = str(result.retry_after)
    return _allow_origin(response, origin)


# -- the rejected-message work queue --------------------------------------------------------------

STATUS_FILTERS = [*RejectedMessage.Status.values, "all"]
LIST_PRETTY_MAX_CHARS = 10_000


def _before(request: HttpRequest) -> int | None:
    try:
        return int(request.GET["before"])
    except (KeyError, ValueError):
        return None


@require_GET
@staff_required
def rejected_list(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status") or RejectedMessage.Status.OPEN
    if status not in STATUS_FILTERS:
        status = RejectedMessage.Status.OPEN
    items, next_before = dlq.rejected_message_page(
        status="" if status == "all" else status, before=_before(request), limit=settings.DEMANDS_PAGE_SIZE
    )
    rows = []
    for item in items:
        text = item.payload_text
        pretty, is_json = dlq.payload_pretty(text) if len(text) <= LIST_PRETTY_MAX_CHARS else (text, False)
        rows.append({"item": item, "pretty": pretty, "is_json": is_json})
    context = {
        "rows": rows,
        "status": status,
        "statuses": [(value, label) for value, label in RejectedMessage.Status.choices] + [("all", _("All"))],
        "next_before": next_before,
        "nav": "rejected",
    }
    template = "demands/rejected_list.html"
    if request.htmx and request.htmx.target == "rejected-table":
        template += "#table"
    return render(request, template, context)


def _get_rejected(pk: int) -> RejectedMessage:
    try:
        return dlq.rejected_message_get(pk=pk)
    except RejectedMessage.DoesNotExist:
        raise Http404("No such rejected message") from None


def _detail_context(request: HttpRequest, rejected: RejectedMessage, *, payload: str | None = None, **extra) -> dict:
    pretty, is_json = dlq.payload_pretty(rejected.payload_text)
    edit_payload = pretty if payload is None else payload
    try:
        schema.parse_demand(edit_payload)
        verdict = None
    except schema.InvalidMessage as exc:
        verdict = exc.reason
    return {
        "item": rejected,
        "pretty": pretty,
        "is_json": is_json,
        "edit_payload": edit_payload,
        "verdict": verdict,  # what the consumer would say about the payload in the form, right now
        "outcome": dlq.replay_outcome(rejected=rejected),
        "can_act": request.user.has_perm(DLQ_PERMISSION),
        "nav": "rejected",
        **extra,
    }


@require_GET
@staff_required
def rejected_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return render(request, "demands/rejected_detail.html", _detail_context(request, _get_rejected(pk)))


def _after_action(request: HttpRequest, pk: int, *, done: str | None = None, error: str | None = None,
                  error_status: int = 409, payload: str | None = None) -> HttpResponse:
    """htmx: swap the work panel (200, so htmx swaps it). Plain form: redirect on success, else re-show."""
    rejected = _get_rejected(pk)
    if request.htmx:
        context = _detail_context(request, rejected, payload=payload, done=done, error=error)
        return render(request, "demands/rejected_detail.html#work", context)
    if error is None:
        messages.success(request, done)
        return redirect("demands:rejected-detail", pk=pk)
    context = _detail_context(request, rejected, payload=payload, error=error)
    return render(request, "demands/rejected_detail.html", context, status=error_status)


def _forbidden() -> HttpResponse:
    return HttpResponse(_("You may not replay or discard rejected messages."), status=403)


@require_POST
@staff_required
def rejected_replay(request: HttpRequest, pk: int) -> HttpResponse:
    if not request.user.has_perm(DLQ_PERMISSION):
        return _forbidden()
    rejected = _get_rejected(pk)
    payload = request.POST.get("payload")
    try:
        dlq.rejected_message_replay(
            rejected=rejected, actor=request.user, payload=payload, note=request.POST.get("note", "")[:NOTE_MAX_CHARS]
        )
    except dlq.AlreadyHandled as exc:
        return _after_action(request, pk, error=str(exc), payload=payload)
    except dlq.SourceChanged as exc:
        return _after_action(request, pk, error=str(exc), error_status=403, payload=payload)
    except dlq.DeliveryFailed as exc:
        error = _("Kafka did not confirm the replay (%(reason)s). Nothing was recorded; the message is still open.") % {
            "reason": exc
        }
        return _after_action(request, pk, error=error, error_status=503, payload=payload)
    done = _("Replayed to %(topic)s[%(partition)s]@%(offset)s. The consumer decides again.") % {
        "topic": rejected.replay_topic, "partition": rejected.replay_partition, "offset": rejected.replay_offset
    }
    return _after_action(request, pk, done=done)


@require_POST
@staff_required
def rejected_discard(request: HttpRequest, pk: int) -> HttpResponse:
    if not request.user.has_perm(DLQ_PERMISSION):
        return _forbidden()
    rejected = _get_rejected(pk)
    try:
        dlq.rejected_message_discard(rejected=rejected, actor=request.user, note=request.POST.get("note", "")[:NOTE_MAX_CHARS])
    except dlq.AlreadyHandled as exc:
        return _after_action(request, pk, error=str(exc))
    return _after_action(request, pk, done=_("Discarded."))
