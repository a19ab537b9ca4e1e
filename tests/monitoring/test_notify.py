"""Notifications: signed webhooks retried with back-off (against a local server), e-mail, browser push."""

import json
import socket
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.core import mail

from demands.monitoring.alerts import evaluate_rules, silence_create
from demands.monitoring.consumers import MonitoringConsumer
from demands.monitoring.models import Alert, AlertDelivery, AlertRule, ConsumerHeartbeat
from demands.monitoring.notify import process_deliveries, retry_delay
from demands.monitoring.webhooks import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, sign, verify_signature

from .conftest import make_rule

Kind = AlertRule.Kind
SECRET = "s3cret-for-tests"


def firing_rule(**fields):
    """A rule that fires at once: no consumer heartbeat at all."""
    return make_rule(Kind.HEARTBEAT_MISSING, threshold=30, notify_browser=False, **fields)


@pytest.fixture(autouse=True)
def _retry_schedule(settings):
    settings.MONITORING_RETRY_BASE_SECONDS = 15
    settings.MONITORING_RETRY_MAX_SECONDS = 3600
    settings.MONITORING_DELIVERY_MAX_ATTEMPTS = 4
    settings.MONITORING_WEBHOOK_TIMEOUT = 2
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]  # the local receivers below


@pytest.mark.django_db
def test_a_webhook_carries_the_alert_as_json_signed_with_hmac_sha256(now, webhook_receiver):
    firing_rule(webhook_url=webhook_receiver.url, webhook_secret=SECRET)
    evaluate_rules(now=now)
    run = process_deliveries(now=now)

    assert run.sent == 1 and len(webhook_receiver.requests) == 1
    request = webhook_receiver.requests[0]
    headers = {key.lower(): value for key, value in request["headers"].items()}
    assert request["path"] == "/hooks/alerts"
    assert headers["content-type"].startswith("application/json")
    assert headers[EVENT_HEADER.lower()] == "alert.firing"
    delivery = AlertDelivery.objects.get(channel="webhook")
    assert headers[DELIVERY_HEADER.lower()] == str(delivery.pk)
    assert verify_signature(SECRET, headers[SIGNATURE_HEADER.lower()], request["body"], now=now.timestamp())
    assert not verify_signature("wrong secret", headers[SIGNATURE_HEADER.lower()], request["body"], now=now.timestamp())
    payload = webhook_receiver.json(0)
    alert = Alert.objects.get()
    assert payload["event"] == "alert.firing"
    assert payload["alert"]["id"] == alert.pk and payload["alert"]["key"] == "group:unified-msg"
    assert payload["alert"]["url"].endswith(f"/monitoring/alerts/{alert.pk}/")
    assert AlertDelivery.objects.get(pk=delivery.pk).status == "sent"


def test_the_signature_covers_timestamp_and_body_and_old_signatures_are_refused():
    body = b'{"a":1}'
    header = sign(SECRET, 1_700_000_000, body)
    assert header.startswith("t=1700000000,sha256=")
    assert verify_signature(SECRET, header, body, now=1_700_000_100)
    assert not verify_signature(SECRET, header, b'{"a":2}', now=1_700_000_100)
    assert not verify_signature(SECRET, header, body, now=1_700_001_000)  # replayed 1000 s later
    assert not verify_signature(SECRET, "garbage", body, now=1_700_000_000)


@pytest.mark.django_db
def test_the_global_secret_signs_when_the_rule_names_none(now, webhook_receiver, settings):
    settings.MONITORING_WEBHOOK_SECRET = "global-secret"
    firing_rule(webhook_url=webhook_receiver.url)
    evaluate_rules(now=now)
    process_deliveries(now=now)
    request = webhook_receiver.requests[0]
    assert verify_signature("global-secret", request["headers"][SIGNATURE_HEADER], request["body"], now=now.timestamp())


def test_retry_delay_doubles_from_the_base_up_to_the_cap(settings):
    settings.MONITORING_RETRY_BASE_SECONDS = 15
    settings.MONITORING_RETRY_MAX_SECONDS = 100
    assert [retry_delay(n).total_seconds() for n in (1, 2, 3, 4)] == [15, 30, 60, 100]


@pytest.mark.django_db
def test_a_failing_webhook_is_retried_with_back_off_until_it_succeeds(now, webhook_receiver):
    for status in (500, 503):
        webhook_receiver.statuses.put(status)
    firing_rule(webhook_url=webhook_receiver.url, webhook_secret=SECRET)
    evaluate_rules(now=now)

    assert process_deliveries(now=now).failed == 1
    delivery = AlertDelivery.objects.get(channel="webhook")
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("pending", 1, 500)
    assert delivery.next_attempt_at == now + timedelta(seconds=15)

    assert process_deliveries(now=now + timedelta(seconds=14)).sent == 0  # not due yet: no request
    assert len(webhook_receiver.requests) == 1

    process_deliveries(now=now + timedelta(seconds=15))
    delivery.refresh_from_db()
    assert (delivery.attempts, delivery.next_attempt_at) == (2, now + timedelta(seconds=45))  # 15 s + 30 s
    assert "503" in delivery.last_error

    assert process_deliveries(now=now + timedelta(seconds=45)).sent == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("sent", 3, "")
    # Every attempt is the same delivery, so the receiver can drop duplicates.
    assert {r["headers"][DELIVERY_HEADER] for r in webhook_receiver.requests} == {str(delivery.pk)}


@pytest.mark.django_db
def test_a_webhook_is_given_up_after_the_maximum_attempts(now, settings):
    settings.MONITORING_DELIVERY_MAX_ATTEMPTS = 2
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{probe.getsockname()[1]}/"
    firing_rule(webhook_url=dead_url)
    evaluate_rules(now=now)
    process_deliveries(now=now)
    run = process_deliveries(now=now + timedelta(hours=1))
    delivery = AlertDelivery.objects.get(channel="webhook")
    assert run.given_up == 1
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("failed", 2, None)
    assert "Connection" in delivery.last_error or "refused" in delivery.last_error.lower()
    assert process_deliveries(now=now + timedelta(days=1)).failed == 0  # never tried again


@pytest.mark.django_db
def test_a_delivery_another_monitor_is_sending_is_left_alone(now, webhook_receiver):
    firing_rule(webhook_url=webhook_receiver.url)
    evaluate_rules(now=now)
    AlertDelivery.objects.update(status="sending", next_attempt_at=now)
    assert process_deliveries(now=now + timedelta(minutes=1)).sent == 0
    assert process_deliveries(now=now + timedelta(minutes=11)).sent == 1  # that monitor died: taken over
    assert len(webhook_receiver.requests) == 1


@pytest.mark.django_db
def test_alerts_are_emailed_through_djangos_mail_backend_on_firing_and_resolving(now):
    firing_rule(email_to="oncall@example.com, lead@example.com", severity="critical")
    evaluate_rules(now=now)
    process_deliveries(now=now)
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["oncall@example.com", "lead@example.com"]
    assert message.subject.startswith("[UMSG CRITICAL] FIRING: No consumer of group unified-msg")
    assert f"/monitoring/alerts/{Alert.objects.get().pk}/" in message.body

    ConsumerHeartbeat.objects.create(name="c", hostname="h", pid=1, group="unified-msg", topics="t", started_at=now, last_seen_at=now)
    evaluate_rules(now=now + timedelta(seconds=10))
    process_deliveries(now=now + timedelta(seconds=10))
    assert [m.subject.split(":")[0] for m in mail.outbox] == ["[UMSG CRITICAL] FIRING", "[UMSG CRITICAL] RESOLVED"]


@pytest.mark.django_db
def test_an_alert_that_was_never_notified_resolves_quietly(now):
    rule = firing_rule(email_to="oncall@example.com", renotify_minutes=0)
    silence_create(rule=rule, minutes=60, now=now)
    evaluate_rules(now=now)
    ConsumerHeartbeat.objects.create(name="c", hostname="h", pid=1, group="unified-msg", topics="t", started_at=now, last_seen_at=now)
    evaluate_rules(now=now + timedelta(seconds=10))
    process_deliveries(now=now + timedelta(seconds=10))
    assert mail.outbox == [] and AlertDelivery.objects.count() == 0
    assert Alert.objects.get().resolved_at is not None


# -- in the browser --------------------------------------------------------------------------------------

@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_staff_browsers_get_a_live_toast_when_an_alert_fires(now, staff_user):
    comm = WebsocketCommunicator(MonitoringConsumer.as_asgi(), "/ws/monitoring/")
    comm.scope["user"] = staff_user
    connected, _ = await comm.connect()
    assert connected
    await sync_to_async(make_rule)(Kind.HEARTBEAT_MISSING, threshold=30, severity="critical")
    await sync_to_async(evaluate_rules)(now=now)

    frame = json.loads(await comm.receive_from(timeout=2))
    assert frame["kind"] == "alert" and frame["event"] == "firing" and frame["severity"] == "critical"
    assert "No consumer of group unified-msg" in frame["html"] and 'class="toast alert-toast sev-critical' in frame["html"]
    await comm.disconnect()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_the_monitoring_socket_refuses_anyone_but_staff(plain_user):
    for user in (AnonymousUser(), plain_user):
        comm = WebsocketCommunicator(MonitoringConsumer.as_asgi(), "/ws/monitoring/")
        comm.scope["user"] = user
        connected, code = await comm.connect()
        assert not connected and code == 4403
