"""Monitoring pages (staff), the header summary fragment, Prometheus /metrics, /healthz and /readyz. Thin."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from demands.access import can_triage, staff_required

from . import conf, health
from .alerts import UnscopedSilence, alert_acknowledge, alert_silence, silence_expire
from .metrics import chart_data
from .models import Alert, AlertRule, Silence
from .panels import panels_context, summary_context

RANGES = [(60, "1 h"), (360, "6 h"), (1440, "24 h"), (10080, "7 d")]
SILENCE_MINUTES = [(60, "1 h"), (240, "4 h"), (1440, "24 h"), (10080, "7 d")]
ALERTS_PAGE_SIZE = 50


def _is_staff(user) -> bool:
    return user.is_authenticated and user.is_active and user.is_staff


def _minutes(request: HttpRequest) -> int:
    try:
        minutes = int(request.GET.get("minutes", 60))
    except ValueError:
        return 60
    return min(max(minutes, 5), 10080)


@require_GET
@staff_required
def monitoring_page(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    minutes = _minutes(request)
    context = {
        **panels_context(now=now),
        **summary_context(now=now),
        "chart_data": chart_data(now=now, minutes=minutes),
        "minutes": minutes,
        "ranges": RANGES,
        "nav": "monitoring",
    }
    template = "monitoring/page.html"
    if request.htmx:
        template += "#panels"
    return render(request, template, context)


@require_GET
@staff_required
def series_json(request: HttpRequest) -> JsonResponse:
    return JsonResponse(chart_data(now=timezone.now(), minutes=_minutes(request)))


@never_cache
@require_GET
def summary_fragment(request: HttpRequest) -> HttpResponse:
    """The header's compact summary. Not a page: anyone but staff gets an empty answer, not a login redirect."""
    if not _is_staff(request.user):
        return HttpResponse(status=204)
    return render(request, "monitoring/_summary.html", summary_context(now=timezone.now()))


@require_GET
@staff_required
def alert_list(request: HttpRequest) -> HttpResponse:
    state = request.GET.get("state", "")
    severity = request.GET.get("severity", "")
    rule_id = request.GET.get("rule", "")
    alerts = Alert.objects.select_related("acknowledged_by")
    if state == "open":
        alerts = alerts.filter(resolved_at__isnull=True)
    elif state == "resolved":
        alerts = alerts.filter(resolved_at__isnull=False)
    if severity in AlertRule.Severity.values:
        alerts = alerts.filter(severity=severity)
    if rule_id.isdigit():
        alerts = alerts.filter(rule_id=int(rule_id))
    before = request.GET.get("before", "")
    if before.isdigit():
        alerts = alerts.filter(id__lt=int(before))
    items = list(alerts.order_by("-id")[: ALERTS_PAGE_SIZE + 1])
    next_before = items[ALERTS_PAGE_SIZE - 1].pk if len(items) > ALERTS_PAGE_SIZE else None
    params = {key: value for key, value in (("state", state), ("severity", severity), ("rule", rule_id)) if value}
    context = {
        "alerts": items[:ALERTS_PAGE_SIZE],
        "next_before": next_before,
        "filter_query": "&".join(f"{key}={value}" for key, value in params.items()),
        "is_first": not before,
        "state": state,
        "severity": severity,
        "rule_id": rule_id,
        "rules": AlertRule.objects.order_by("name"),
        "severities": AlertRule.Severity.choices,
        "silences": Silence.objects.filter(ends_at__gt=timezone.now()).select_related("rule", "created_by")[:50],
        "nav": "monitoring",
    }
    template = "monitoring/alerts.html"
    if request.htmx and request.htmx.target == "alert-table":
        template += "#table"
    return render(request, template, context)


@require_GET
@staff_required
def alert_detail(request: HttpRequest, pk: int) -> HttpResponse:
    alert = get_object_or_404(Alert.objects.select_related("rule", "demand", "acknowledged_by"), pk=pk)
    now = timezone.now()
    silences = [
        s for s in Silence.objects.filter(ends_at__gt=now).select_related("rule")
        if s.matches(rule_id=alert.rule_id, key=alert.key, now=now)
    ]
    return render(
        request,
        "monitoring/alert_detail.html",
        {
            "alert": alert,
            "deliveries": alert.deliveries.order_by("id"),
            "silences": silences,
            "silence_minutes": SILENCE_MINUTES,
            "earlier": Alert.objects.filter(rule_id=alert.rule_id, key=alert.key).exclude(pk=alert.pk).order_by("-id")[:20]
            if alert.rule_id else [],
            "nav": "monitoring",
        },
    )


@require_POST
@staff_required
def alert_acknowledge_view(request: HttpRequest, pk: int) -> HttpResponse:
    if not can_triage(request.user):
        return _may_not_respond()
    alert = get_object_or_404(Alert, pk=pk)
    alert_acknowledge(alert=alert, actor=request.user)
    messages.success(request, _("Acknowledged: no more reminders for this alert."))
    return redirect("demands:monitoring:alert", pk=alert.pk)


@require_POST
@staff_required
def alert_silence_view(request: HttpRequest, pk: int) -> HttpResponse:
    if not can_triage(request.user):
        return _may_not_respond()
    alert = get_object_or_404(Alert, pk=pk)
    try:
        minutes = int(request.POST.get("minutes", ""))
        alert_silence(alert=alert, minutes=minutes, comment=request.POST.get("comment", ""), actor=request.user)
    except UnscopedSilence:
        messages.error(request, _("This alert's rule was deleted: silence from the admin, naming the rules and keys."))
    except (ValueError, TypeError):
        messages.error(request, _("Choose how long to silence this alert (one minute to 30 days)."))
    else:
        messages.success(request, _("Silenced: no notifications for this alert until the silence ends."))
    return redirect("demands:monitoring:alert", pk=alert.pk)


@require_POST
@staff_required
def silence_expire_view(request: HttpRequest, pk: int) -> HttpResponse:
    if not can_triage(request.user):
        return _may_not_respond()
    silence = get_object_or_404(Silence, pk=pk)
    silence_expire(silence=silence)
    messages.success(request, _("Silence ended."))
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        target = "demands:monitoring:alerts"
    return redirect(target)


def _may_not_respond() -> HttpResponse:
    # Acknowledging and silencing mute alerting for everyone: triagers' work, not viewers'.
    return HttpResponse(_("You may not acknowledge or silence alerts."), status=403)


# -- machine endpoints ------------------------------------------------------------------------------

@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    # Backlog, sources, consumer names and hosts are internals: staff or the scraper's token, unless
    # METRICS_PUBLIC=1 (and no token) opens it.
    token = getattr(settings, "METRICS_TOKEN", "") or conf.get("MONITORING_METRICS_TOKEN")
    given = request.headers.get("Authorization", "")
    allowed = (
        _is_staff(request.user)
        or (token and hmac.compare_digest(given.encode(), f"Bearer {token}".encode()))
        or (not token and getattr(settings, "METRICS_PUBLIC", False))
    )
    if not allowed:
        response = HttpResponse("unauthorized\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    from .prometheus import WebRegistry

    return HttpResponse(generate_latest(WebRegistry()), content_type=CONTENT_TYPE_LATEST)


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Alive: the process answers. No dependencies checked (a database outage must not restart web servers)."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Ready: the database and the Kafka broker answer. 503 with the failing check otherwise."""
    database_ok, database = health.database_reachable()
    broker_ok, broker = health.broker_reachable()
    ok = database_ok and broker_ok
    checks = {"database": database, "broker": broker}
    if not _is_staff(request.user):  # exception text names hosts and users: staff (and the log) only
        checks = health.public_checks(database_ok=database_ok, broker_ok=broker_ok)
    return JsonResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks},
        status=200 if ok else 503,
    )
