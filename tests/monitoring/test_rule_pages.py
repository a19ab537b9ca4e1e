"""The alert-rules pages: staff look; creating, editing and disabling needs the permission;
"test now" and the 24-hour back-test; webhook credentials for superusers only."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from demands.monitoring.flow import add_flow, floor_minute
from demands.monitoring.models import AlertRule
from demands.monitoring.rules import alert_rule_backtest

from .conftest import make_rule

pytestmark = pytest.mark.django_db

FORM = {
    "name": "Too many rejects", "enabled": "on", "kind": "rejection_ratio", "severity": "warning", "threshold": "0.3",
    "window_minutes": "5", "min_messages": "10", "group_by": "all", "renotify_minutes": "60", "notify_browser": "on",
}


@pytest.fixture
def editor(django_user_model, client):
    user = django_user_model.objects.create_user(username="ops", password="x", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["add_alertrule", "change_alertrule"]))
    client.force_login(user)
    return client


def test_staff_see_the_rules_and_viewers_cannot_change_them(client, viewer_user):
    rule = make_rule(AlertRule.Kind.HEARTBEAT_MISSING, name="No heartbeat", threshold=60)
    client.force_login(viewer_user)
    html = client.get(reverse("demands:monitoring:rules")).content.decode()
    assert "No heartbeat" in html and 'id="new-rule"' not in html and "Disable" not in html
    assert client.post(reverse("demands:monitoring:rule-new"), FORM).status_code == 403
    assert client.post(reverse("demands:monitoring:rule", args=[rule.pk]), {**FORM, "save": "1"}).status_code == 403
    assert client.post(reverse("demands:monitoring:rule-toggle", args=[rule.pk]), {"enabled": "0"}).status_code == 403
    assert AlertRule.objects.get(pk=rule.pk).enabled and AlertRule.objects.count() == 1
    client.logout()
    assert client.get(reverse("demands:monitoring:rules")).status_code == 302  # to the login page


def test_an_editor_creates_edits_and_disables_a_rule(editor):
    response = editor.post(reverse("demands:monitoring:rule-new"), {**FORM, "save": "1"})
    rule = AlertRule.objects.get(name="Too many rejects")
    assert response.status_code == 302 and response.url == reverse("demands:monitoring:rule", args=[rule.pk])
    editor.post(reverse("demands:monitoring:rule", args=[rule.pk]), {**FORM, "threshold": "0.6", "save": "1"})
    rule.refresh_from_db()
    assert rule.threshold == 0.6
    editor.post(reverse("demands:monitoring:rule-toggle", args=[rule.pk]), {"enabled": "0"})
    rule.refresh_from_db()
    assert not rule.enabled
    assert "disabled" in editor.get(reverse("demands:monitoring:rules")).content.decode()


def test_an_invalid_rule_is_refused_with_the_reason_and_nothing_saved(editor):
    response = editor.post(reverse("demands:monitoring:rule-new"), {**FORM, "threshold": "3", "save": "1"})
    assert response.status_code == 200 and "A ratio between 0 and 1" in response.content.decode()
    assert not AlertRule.objects.exists()


def test_test_now_shows_the_current_value_against_the_threshold_and_saves_nothing(client, viewer_user):
    now = timezone.now()
    add_flow([(floor_minute(now), "arrival", "t", "s", 10), (floor_minute(now), "rejection", "t", "s", 30)])
    client.force_login(viewer_user)  # testing changes nothing: viewers may
    html = client.post(reverse("demands:monitoring:rule-new"), {**FORM, "test": "1"}).content.decode()
    assert "Would fire now for 1 key" in html and "0.75 &gt; 0.3" in html
    assert "Would have fired 1 time in the last 24 h" in html
    assert not AlertRule.objects.exists()


def test_the_backtest_counts_episodes_over_stored_minutes():
    now = timezone.now()
    rule = AlertRule(kind=AlertRule.Kind.ARRIVAL_SPIKE, threshold=5, window_minutes=1, group_by="all")
    minute = floor_minute(now)
    add_flow([(minute - timedelta(minutes=30), "arrival", "t", "s", 9), (minute - timedelta(minutes=29), "arrival", "t", "s", 9),
              (minute - timedelta(minutes=10), "arrival", "t", "s", 9), (minute - timedelta(minutes=5), "arrival", "t", "s", 2)])
    result = alert_rule_backtest(rule=rule, now=now)
    assert (result.supported, result.episodes, result.minutes_firing, result.peak) == (True, 2, 3, 9)
    assert not alert_rule_backtest(rule=AlertRule(kind=AlertRule.Kind.HEARTBEAT_MISSING, threshold=60), now=now).supported


def test_webhook_credentials_are_for_superusers_only(editor, admin_client):
    assert "webhook_url" not in editor.get(reverse("demands:monitoring:rule-new")).content.decode()
    assert 'name="webhook_url"' in admin_client.get(reverse("demands:monitoring:rule-new")).content.decode()
    rule = make_rule(AlertRule.Kind.HEARTBEAT_MISSING, threshold=60, webhook_url="https://hooks.example.com/x", webhook_secret="s3")
    editor.post(reverse("demands:monitoring:rule", args=[rule.pk]), {
        **FORM, "kind": "heartbeat_missing", "threshold": "90", "webhook_url": "https://evil.example.com/", "save": "1",
    })
    rule.refresh_from_db()
    assert (rule.threshold, rule.webhook_url, rule.webhook_secret) == (90, "https://hooks.example.com/x", "s3")
