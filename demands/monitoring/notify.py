"""Alert notifications: browser (live, after commit), webhook and e-mail (an outbox, retried with back-off).

`enqueue_notifications` runs inside the evaluation transaction and only writes rows; nothing
leaves the process before the transaction commits. `process_deliveries` (every monitor tick)
sends what is due through `demands.outbox.drain` (shared with people's notifications): a failed
attempt is retried after base · 2^(attempt−1) seconds (capped), and given up after
MONITORING_DELIVERY_MAX_ATTEMPTS; the rows are the delivery history. A delivery is claimed with a
compare-and-set update, so two monitors never send the same one; one that a crashed monitor left
"sending" is retried after a while.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse

from .. import outbox
from ..outbox import SEND_FAILED, STUCK_AFTER, DeliveryRun  # noqa: F401 (their old home)
from . import conf, live
from .models import Alert, AlertDelivery, AlertRule
from .webhooks import WebhookError, post_webhook

logger = logging.getLogger(__name__)


def alert_url(alert: Alert) -> str:
    return conf.get("MONITORING_BASE_URL") + reverse("demands:monitoring:alert", args=[alert.pk])


def alert_payload(alert: Alert, event: str, now: datetime) -> dict:
    return {
        "event": f"alert.{event}",
        "sent_at": now.isoformat(),
        "alert": {
            "id": alert.pk,
            "rule": alert.rule_name,
            "rule_id": alert.rule_id,
            "condition": alert.kind,
            "key": alert.key,
            "severity": alert.severity,
            "state": "resolved" if alert.resolved_at else "firing",
            "title": alert.title,
            "detail": alert.detail,
            "value": alert.value,
            "demand_id": alert.demand_id,
            "opened_at": alert.opened_at.isoformat(),
            "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
            "url": alert_url(alert),
        },
    }


def enqueue_notifications(*, alert: Alert, rule: AlertRule, event: str, now: datetime) -> list[AlertDelivery]:
    """Record one delivery per configured channel; the browser one is pushed after commit."""
    payload = alert_payload(alert, event, now)
    deliveries = []
    if rule.notify_browser:
        deliveries.append(AlertDelivery(
            alert=alert, channel=AlertDelivery.Channel.BROWSER, event=event, payload=payload,
            status=AlertDelivery.Status.SENT, attempts=1, created_at=now, sent_at=now,
        ))
        alert_id = alert.pk
        transaction.on_commit(lambda: _push_to_browsers(alert_id, event))
    if rule.webhook_url:
        deliveries.append(AlertDelivery(
            alert=alert, channel=AlertDelivery.Channel.WEBHOOK, event=event, target=rule.webhook_url, payload=payload,
            next_attempt_at=now, created_at=now,
        ))
    recipients = [address.strip() for address in rule.email_to.split(",") if address.strip()]
    if recipients:
        deliveries.append(AlertDelivery(
            alert=alert, channel=AlertDelivery.Channel.EMAIL, event=event, target=",".join(recipients), payload=payload,
            next_attempt_at=now, created_at=now,
        ))
    return AlertDelivery.objects.bulk_create(deliveries)


def _push_to_browsers(alert_id: int, event: str) -> None:
    try:
        live.broadcast_alert(Alert.objects.get(pk=alert_id), event)
    except Exception:  # a browser missing a toast must not fail the evaluation; the page shows it
        logger.exception("browser notification of alert %s failed", alert_id)


def retry_delay(attempts: int) -> timedelta:
    """Back-off after the n-th failed attempt: base, 2·base, 4·base … capped."""
    base = conf.get("MONITORING_RETRY_BASE_SECONDS")
    return timedelta(seconds=min(base * 2 ** max(attempts - 1, 0), conf.get("MONITORING_RETRY_MAX_SECONDS")))


def process_deliveries(*, now: datetime, limit: int = 50) -> DeliveryRun:
    """Send due alert deliveries (demands.outbox: claimed, retried with back-off, given up)."""
    return outbox.drain(
        model=AlertDelivery, now=now, send=_send, limit=limit, select_related=("alert", "alert__rule"),
        max_attempts=conf.get("MONITORING_DELIVERY_MAX_ATTEMPTS"), retry_delay=retry_delay,
    )


def _send(delivery: AlertDelivery, now: datetime) -> int | None:
    if delivery.channel == AlertDelivery.Channel.WEBHOOK:
        rule = delivery.alert.rule
        secret = (rule.webhook_secret if rule else "") or conf.get("MONITORING_WEBHOOK_SECRET")
        return post_webhook(
            delivery.target, delivery.payload, secret=secret, event=delivery.event, delivery_id=delivery.pk,
            timestamp=int(now.timestamp()), timeout=conf.get("MONITORING_WEBHOOK_TIMEOUT"),
        )
    if delivery.channel == AlertDelivery.Channel.EMAIL:
        subject, body = _email(delivery.payload["alert"], delivery.event)
        send_mail(
            subject, body, conf.get("MONITORING_EMAIL_FROM") or settings.DEFAULT_FROM_EMAIL,
            delivery.target.split(","), fail_silently=False,
        )
        return None
    raise WebhookError(f"channel {delivery.channel} is not delivered from the outbox")


def _email(alert: dict, event: str) -> tuple[str, str]:
    state = {"firing": "FIRING", "renotify": "STILL FIRING", "resolved": "RESOLVED"}[event]
    subject = one_line(f"[UMSG {alert['severity'].upper()}] {state}: {alert['title']}")[:250]
    lines = [
        alert["title"],
        "",
        alert["detail"],
        "",
        f"Rule: {alert['rule']}    Key: {alert['key']}",
        f"Opened: {alert['opened_at']}",
    ]
    if alert["resolved_at"]:
        lines.append(f"Resolved: {alert['resolved_at']}")
    lines += ["", alert["url"]]
    return subject, "\n".join(lines)


_CONTROL = {code: " " for code in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]}


def one_line(text: str) -> str:
    """A header value: titles carry sources and keys from messages anyone sends, and a line break
    in a subject makes Django refuse the whole e-mail (BadHeaderError), so the alert never goes out."""
    return " ".join(text.translate(_CONTROL).split())


def delivery_retry_now(*, delivery: AlertDelivery, now: datetime) -> AlertDelivery:
    """Admin action: try a failed or waiting delivery again at the next tick."""
    if delivery.status in {AlertDelivery.Status.FAILED, AlertDelivery.Status.PENDING}:
        delivery.status = AlertDelivery.Status.PENDING
        delivery.next_attempt_at = now
        if delivery.attempts >= conf.get("MONITORING_DELIVERY_MAX_ATTEMPTS"):
            delivery.attempts = conf.get("MONITORING_DELIVERY_MAX_ATTEMPTS") - 1
        delivery.save(update_fields=["status", "next_attempt_at", "attempts"])
    return delivery
