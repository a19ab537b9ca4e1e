"""Monitoring pages, the header summary, alert history, /metrics, /healthz and /readyz."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from demands.monitoring import health
from demands.monitoring.alerts import evaluate_rules
from demands.monitoring.flow import add_flow, floor_minute, snapshot_backlog
from demands.monitoring.lag import PartitionLag, record_lag
from demands.monitoring.models import Alert, AlertRule, Silence

from .conftest import make_demand, make_rule

pytestmark = pytest.mark.django_db
PAGES = ["demands:monitoring:index", "demands:monitoring:alerts", "demands:monitoring:series"]


@pytest.mark.parametrize("name", PAGES)
def test_monitoring_pages_send_anonymous_and_non_staff_users_to_the_login_page(client, plain_user, name):
    response = client.get(reverse(name))
    assert response.status_code == 302 and "/login/" in response["Location"]
    client.force_login(plain_user)
    assert client.get(reverse(name)).status_code == 302


def test_the_monitoring_page_has_the_charts_the_vendored_library_and_the_current_state(staff_client):
    make_demand(priority="urgent")
    make_demand(priority="normal", status="triaged")
    record_lag(now=timezone.now(), group="unified-msg", partitions=[PartitionLag("demand-topic", 3, 40, 0, 52)])
    response = staff_client.get(reverse("demands:monitoring:index"))
    html = response.content.decode()
    assert response.status_code == 200
    assert "/static/vendor/uplot/uPlot.iife.min.js" in html and 'id="monitor-series"' in html
    for chart in ("flow", "backlog", "ingest", "first_action", "lag"):
        assert f'data-chart="{chart}"' in html
    assert 'id="lag-table"' in html and "<td class=\"num\">12</td>" in html  # partition 3: 52 − 40
    assert 'id="backlog-table"' in html
    assert 'class="active" aria-current="page">Monitoring' in html  # the topbar link


def test_an_htmx_request_gets_only_the_panels(staff_client):
    response = staff_client.get(reverse("demands:monitoring:index"), HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="monitor-panels">') and "<html" not in html


def test_series_share_one_minute_axis_and_gaps_stay_gaps(staff_client):
    now = timezone.now()
    add_flow([(floor_minute(now), "arrival", "t", "s", 7)])
    response = staff_client.get(reverse("demands:monitoring:series"), {"minutes": "30"})
    data = response.json()
    assert len(data["t"]) == 30 and data["t"][1] - data["t"][0] == 60
    assert data["arrivals"][-1] == 7 and data["arrivals"][0] == 0
    assert len(data["ingest_p95"]) == 30 and data["ingest_p95"][-1] is None
    assert data["lag"] == [None] * 30  # never sampled: unknown, not zero
    assert staff_client.get(reverse("demands:monitoring:series"), {"minutes": "99999"}).json()["t"].__len__() == 10080


def test_the_header_summary_shows_backlog_urgent_and_alerts_for_staff(staff_client, now):
    make_demand(priority="urgent")
    make_demand(priority="urgent")
    make_demand(priority="low")
    make_rule(AlertRule.Kind.HEARTBEAT_MISSING, threshold=30, severity="critical")
    evaluate_rules(now=timezone.now())
    html = staff_client.get(reverse("demands:monitoring:summary")).content.decode()
    assert "Backlog 3" in html and "2 urgent" in html
    assert "1 alert" in html and "health-critical" in html
    staff_client.logout()
    assert staff_client.get(reverse("demands:monitoring:summary")).status_code == 204  # not a login page in the header


def test_every_staff_page_has_the_summary_slot(staff_client):
    html = staff_client.get(reverse("demands:list")).content.decode()
    assert 'id="monitor-summary"' in html and reverse("demands:monitoring:summary") in html
    assert "/static/js/monitoring.js" in html


def test_alert_history_filters_by_state_and_pages_by_id(staff_client, now):
    rule = make_rule(AlertRule.Kind.HEARTBEAT_MISSING, threshold=30)
    for i in range(3):
        Alert.objects.create(rule=rule, rule_name=rule.name, kind=rule.kind, key=f"old-{i}", severity="warning",
                             title=f"Resolved alert {i}", opened_at=now, last_seen_at=now, resolved_at=now)
    evaluate_rules(now=now)
    opened = Alert.objects.get(resolved_at__isnull=True)

    html = staff_client.get(reverse("demands:monitoring:alerts"), {"state": "open"}).content.decode()
    assert opened.title in html and "Resolved alert" not in html
    html = staff_client.get(reverse("demands:monitoring:alerts"), {"state": "resolved", "before": Alert.objects.get(key="old-2").pk}).content.decode()
    assert "Resolved alert 1" in html and "Resolved alert 2" not in html


def test_alert_detail_shows_what_was_sent(staff_client, now):
    make_rule(AlertRule.Kind.HEARTBEAT_MISSING, threshold=30, email_to="oncall@example.com")
    evaluate_rules(now=now)
    alert = Alert.objects.get()
    html = staff_client.get(reverse("demands:monitoring:alert", args=[alert.pk])).content.decode()
    assert alert.title in html and 'id="delivery-table"' in html and "oncall@example.com" in html


def test_acknowledging_from_the_alert_page_records_who(staff_client, staff_user, now):
    make_rule(AlertRule.Kind.HEARTBEAT_MISSING, threshold=30)
    evaluate_rules(now=now)
    alert = Alert.objects.get()
    response = staff_client.post(reverse("demands:monitoring:alert-acknowledge", args=[alert.pk]))
    assert response.status_code == 302
    alert.refresh_from_db()
    assert alert.acknowledged_by == staff_user


def test_silencing_from_the_alert_page_mutes_exactly_that_rule_and_key(staff_client, staff_user, now):
    rule = make_rule(AlertRule.Kind.URGENT_UNASSIGNED, window_minutes=1)
    make_demand(priority="urgent", received_at=timezone.now() - timedelta(minutes=5))
    evaluate_rules(now=timezone.now())
    alert = Alert.objects.get()
    staff_client.post(reverse("demands:monitoring:alert-silence", args=[alert.pk]), {"minutes": "240", "comment": "on it"})
    silence = Silence.objects.get()
    assert silence.rule == rule and silence.created_by == staff_user and silence.comment == "on it"
    assert silence.matches(rule_id=rule.pk, key=alert.key, now=timezone.now())
    assert not silence.matches(rule_id=rule.pk, key=alert.key + "0", now=timezone.now())
    assert (silence.ends_at - silence.starts_at) == timedelta(hours=4)
    alert.refresh_from_db()
    assert alert.silenced

    staff_client.post(reverse("demands:monitoring:silence-expire", args=[silence.pk]), {"next": "//evil.example/"})
    silence.refresh_from_db()
    assert not silence.is_active(timezone.now() + timedelta(seconds=1))


def test_a_silence_needs_a_duration(staff_client, now):
    make_rule(AlertRule.Kind.HEARTBEAT_MISSING, threshold=30)
    evaluate_rules(now=now)
    staff_client.post(reverse("demands:monitoring:alert-silence", args=[Alert.objects.get().pk]), {"minutes": "forever"})
    assert Silence.objects.count() == 0


# -- machine endpoints ----------------------------------------------------------------------------------

def metric_lines(client, **headers):
    response = client.get("/metrics", **headers)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    return response.content.decode().splitlines()


def test_metrics_expose_backlog_lag_consumers_and_open_alerts(staff_client):
    client = staff_client  # /metrics needs a staff session or the token (METRICS_PUBLIC=1 opens it)
    now = timezone.now()
    make_demand(priority="urgent")
    make_demand(priority="urgent")
    snapshot_backlog(now=now)
    record_lag(now=now, group="unified-msg", partitions=[PartitionLag("demand-topic", 0, 90, 0, 100)])
    make_rule(AlertRule.Kind.HEARTBEAT_MISSING, threshold=30, name="consumers alive", severity="critical")
    evaluate_rules(now=now)

    lines = metric_lines(client)
    assert 'umsg_backlog{priority="urgent",status="new"} 2.0' in lines
    assert 'umsg_consumer_lag{group="unified-msg",partition="0",topic="demand-topic"} 10.0' in lines
    assert 'umsg_consumer_lag_total{group="unified-msg"} 10.0' in lines
    assert 'umsg_alerts_open{rule="consumers alive",severity="critical"} 1.0' in lines
    assert any(line.startswith("process_") or line.startswith("python_info") for line in lines)


def test_metrics_expose_ingest_latency_percentiles_in_seconds(staff_client):
    client = staff_client
    from demands.monitoring.flow import add_latency

    now = timezone.now()
    add_latency([(floor_minute(now), "ingest", 100, 10, 500), (floor_minute(now), "ingest", 200, 10, 1500)])
    lines = metric_lines(client)
    assert 'umsg_ingest_latency_seconds{quantile="0.5"} 0.1' in lines
    assert 'umsg_ingest_latency_seconds{quantile="0.95"} 0.19' in lines


def test_metrics_need_the_token_when_one_is_configured(client, settings):
    settings.MONITORING_METRICS_TOKEN = "scrape-me"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert metric_lines(client, HTTP_AUTHORIZATION="Bearer scrape-me")


def test_healthz_answers_without_checking_dependencies(client, monkeypatch):
    monkeypatch.setattr(health, "database_reachable", lambda: (_ for _ in ()).throw(AssertionError("not called")))
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_is_503_naming_the_check_that_failed(staff_client, monkeypatch):
    client = staff_client  # the detail is for staff; anonymous callers see "unavailable"
    monkeypatch.setattr(health, "broker_reachable", lambda: (False, "KafkaException: transport failure"))
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "checks": {"database": "ok", "broker": "KafkaException: transport failure"}}


def test_readyz_is_200_when_database_and_broker_answer(client, monkeypatch):
    monkeypatch.setattr(health, "broker_reachable", lambda: (True, "ok"))
    assert client.get("/readyz").status_code == 200


@pytest.mark.parametrize("model", ["alertrule", "alert", "silence", "alertdelivery", "consumerheartbeat", "flowbucket", "latencybucket", "backlogsample", "lagsample"])
def test_the_admin_lists_every_monitoring_model(admin_client, model, now):
    make_rule(AlertRule.Kind.HEARTBEAT_MISSING, threshold=30, email_to="oncall@example.com")
    evaluate_rules(now=now)
    assert admin_client.get(reverse(f"admin:demands_{model}_changelist")).status_code == 200


def test_alert_rules_are_added_in_the_admin_with_their_condition_checked(admin_client):
    url = reverse("admin:demands_alertrule_add")
    assert admin_client.get(url).status_code == 200
    form = {
        "name": "Too many rejected", "enabled": "on", "kind": "rejection_ratio", "severity": "warning", "threshold": "5",
        "window_minutes": "10", "min_messages": "20", "group_by": "all", "renotify_minutes": "60", "notify_browser": "on",
    }
    response = admin_client.post(url, form)
    assert response.status_code == 200 and "between 0 and 1" in response.content.decode()
    response = admin_client.post(url, {**form, "threshold": "0.2"})
    assert response.status_code == 302 and AlertRule.objects.get().threshold == 0.2


def test_chart_series_carry_backlog_per_status_and_latency_percentiles_in_seconds(staff_client):
    from demands.monitoring.flow import add_latency

    now = timezone.now()
    make_demand(priority="urgent")
    make_demand(status="triaged")
    snapshot_backlog(now=now)
    add_latency([(floor_minute(now), "ingest", 100, 10, 500), (floor_minute(now), "ingest", 200, 10, 1500)])
    data = staff_client.get(reverse("demands:monitoring:series"), {"minutes": "10"}).json()
    assert data["backlog"]["new"][-1] == 1 and data["backlog"]["triaged"][-1] == 1
    assert data["backlog"]["in_progress"][-1] == 0 and data["backlog"]["urgent"][-1] == 1
    assert data["backlog"]["new"][0] is None  # no sample that minute
    assert data["ingest_p50"][-1] == 0.1 and data["ingest_p95"][-1] == 0.19


def test_durations_read_naturally():
    from demands.monitoring.metrics import human_duration

    assert [human_duration(ms) for ms in (None, 120, 1500, 270_000, 7_560_000, 259_200_000)] == [
        "—", "120 ms", "1.5 s", "4.5 min", "2.1 h", "3.0 d",
    ]


@pytest.mark.django_db
def test_viewers_get_no_respond_buttons_and_are_refused_when_they_post(client, viewer_user, now):
    rule = make_rule(AlertRule.Kind.HEARTBEAT_MISSING, threshold=30)
    alert = Alert.objects.create(rule=rule, rule_name=rule.name, kind=rule.kind, key="group:g", severity=rule.severity,
                                 title="No consumer", opened_at=now, last_seen_at=now)
    silence = Silence.objects.create(rule=rule, key_pattern="group:g", starts_at=now, ends_at=timezone.now() + timedelta(hours=1))
    client.force_login(viewer_user)
    page = client.get(reverse("demands:monitoring:alert", args=[alert.pk])).content.decode()
    assert "alert-acknowledge" not in page and "/acknowledge/" not in page and "End now" not in page and 'name="minutes"' not in page
    assert client.post(reverse("demands:monitoring:alert-acknowledge", args=[alert.pk])).status_code == 403
    assert client.post(reverse("demands:monitoring:alert-silence", args=[alert.pk]), {"minutes": "60"}).status_code == 403
    assert client.post(reverse("demands:monitoring:silence-expire", args=[silence.pk])).status_code == 403
    alert.refresh_from_db()
    silence.refresh_from_db()
    assert alert.acknowledged_at is None and Silence.objects.count() == 1 and silence.is_active(timezone.now())


@pytest.mark.django_db
def test_an_alert_whose_rule_was_deleted_cannot_make_a_silence_for_every_rule(staff_client, now):
    # rule=None on a silence means "all rules": silencing such an alert would mute every rule for its key.
    rule = make_rule(AlertRule.Kind.HEARTBEAT_MISSING, threshold=30)
    alert = Alert.objects.create(rule=rule, rule_name=rule.name, kind=rule.kind, key="group:g", severity=rule.severity,
                                 title="No consumer", opened_at=now, last_seen_at=now)
    rule.delete()
    alert.refresh_from_db()
    assert alert.rule_id is None
    response = staff_client.post(reverse("demands:monitoring:alert-silence", args=[alert.pk]), {"minutes": "60"}, follow=True)
    assert not Silence.objects.exists()
    assert "rule was deleted" in response.content.decode()


@pytest.mark.django_db
def test_the_silence_service_refuses_an_alert_without_a_rule(now):
    from demands.monitoring.alerts import alert_silence

    alert = Alert.objects.create(rule=None, rule_name="gone", kind=AlertRule.Kind.HEARTBEAT_MISSING, key="group:g",
                                 severity="warning", title="No consumer", opened_at=now, last_seen_at=now)
    with pytest.raises(ValueError):
        alert_silence(alert=alert, minutes=60)
    assert not Silence.objects.exists()


def test_readyz_tells_anonymous_callers_only_what_is_unavailable(client, monkeypatch):
    monkeypatch.setattr(health, "database_reachable", lambda: (False, 'OperationalError: connection to "db.internal" user "umsg" failed'))
    monkeypatch.setattr(health, "broker_reachable", lambda: (False, "KafkaException: broker kafka-1.internal:9092 down"))
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "checks": {"database": "unavailable", "broker": "unavailable"}}


def test_metrics_are_closed_to_anonymous_callers_by_default(client, settings):
    settings.MONITORING_METRICS_TOKEN = ""
    settings.METRICS_TOKEN = ""
    response = client.get("/metrics")
    assert response.status_code == 401 and "Bearer" in response["WWW-Authenticate"]


def test_metrics_take_the_metrics_token_and_can_be_opened_explicitly(client, settings):
    settings.METRICS_TOKEN = "scrape-token"
    assert client.get("/metrics").status_code == 401
    assert metric_lines(client, HTTP_AUTHORIZATION="Bearer scrape-token")
    settings.METRICS_TOKEN = ""
    settings.METRICS_PUBLIC = True
    assert metric_lines(client)
