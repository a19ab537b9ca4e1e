"""Incoming-webhook URLs are credentials (Slack, Teams and friends put the key in the path): only
superusers see them whole, on the alert page and in the admin."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from demands.monitoring.alerts import evaluate_rules
from demands.monitoring.models import Alert, AlertDelivery, AlertRule
from demands.monitoring.webhooks import mask_url

from .conftest import make_rule

pytestmark = pytest.mark.django_db
HOOK = "https://hooks.example.com:8443/services/T000/B000/XXXXsecretXXXX?token=abc"
SECRET_PARTS = ("XXXXsecretXXXX", "token=abc", "/services/")


@pytest.fixture
def alert(now):
    make_rule(AlertRule.Kind.HEARTBEAT_MISSING, threshold=30, webhook_url=HOOK, webhook_secret="hmac-key-123")
    evaluate_rules(now=now)
    return Alert.objects.get()


@pytest.fixture
def admin_viewer(client, django_user_model):
    """Staff who may open the monitoring admin (view and change rules) but are not superusers."""
    user = django_user_model.objects.create_user(username="ops", password=None, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(
        content_type__app_label="demands",
        codename__in=["view_alertrule", "change_alertrule", "view_alert", "view_alertdelivery", "change_alertdelivery"],
    ))
    client.force_login(user)
    return client


def test_a_webhook_url_is_masked_to_scheme_and_host():
    assert mask_url(HOOK) == "https://hooks.example.com:8443/…"
    assert mask_url("http://user:pw@hooks.example.com/x") == "http://hooks.example.com/…"
    assert mask_url("") == ""


def test_the_alert_page_masks_webhook_urls_for_staff_and_shows_them_to_superusers(staff_client, admin_client, alert):
    page = staff_client.get(reverse("demands:monitoring:alert", args=[alert.pk])).content.decode()
    assert "https://hooks.example.com:8443/…" in page
    assert not any(part in page for part in SECRET_PARTS)
    assert "XXXXsecretXXXX" in admin_client.get(reverse("demands:monitoring:alert", args=[alert.pk])).content.decode()


def test_the_admin_masks_webhook_urls_and_secrets_for_non_superusers(admin_viewer, alert):
    rule = AlertRule.objects.get()
    delivery = AlertDelivery.objects.get(channel="webhook")
    pages = [
        reverse("admin:demands_alertrule_change", args=[rule.pk]),
        reverse("admin:demands_alertrule_changelist"),
        reverse("admin:demands_alertdelivery_changelist"),
        reverse("admin:demands_alertdelivery_change", args=[delivery.pk]),
        reverse("admin:demands_alert_change", args=[alert.pk]),
    ]
    for url in pages:
        response = admin_viewer.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert not any(part in html for part in SECRET_PARTS), url
        assert "hmac-key-123" not in html, url
    assert "https://hooks.example.com:8443/…" in admin_viewer.get(pages[0]).content.decode()


def test_a_non_superuser_saving_a_rule_keeps_its_webhook(admin_viewer, alert):
    rule = AlertRule.objects.get()
    url = reverse("admin:demands_alertrule_change", args=[rule.pk])
    form = admin_viewer.get(url).context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None and name in form.fields}
    data.update({"name": "renamed", "kind": rule.kind, "severity": rule.severity})
    for name, field in form.fields.items():
        if isinstance(data.get(name), bool) and not data[name]:
            data.pop(name)
    response = admin_viewer.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    rule.refresh_from_db()
    assert rule.name == "renamed" and rule.webhook_url == HOOK and rule.webhook_secret == "hmac-key-123"


def test_superusers_see_webhook_urls_in_the_admin(admin_client, alert):
    rule = AlertRule.objects.get()
    assert "XXXXsecretXXXX" in admin_client.get(reverse("admin:demands_alertrule_change", args=[rule.pk])).content.decode()
    assert "XXXXsecretXXXX" in admin_client.get(reverse("admin:demands_alertdelivery_changelist")).content.decode()
