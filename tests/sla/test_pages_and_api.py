"""The SLA on the API, the list (badge, filter, sort), the detail page, and the policy page."""

from datetime import timedelta, timezone

import pytest
from django.utils import translation
from django.contrib.auth.models import Permission

from demands import services
from demands.models import Demand
from demands.sla.escalation import sla_tick
from demands.sla.models import SlaPolicy

from .conftest import T0, ingest, make_policy

pytestmark = pytest.mark.django_db


def utc(moment) -> str:
    return moment.astimezone(timezone.utc).isoformat()


def test_the_api_shows_a_demands_sla(clock, staff_client):
    policy = make_policy()
    demand = ingest()
    body = staff_client.get(f"/api/demands/{demand.pk}/").json()
    assert body["sla"] == {
        "policy": {"id": policy.pk, "name": "Urgent"}, "respond_by": utc(T0 + timedelta(minutes=30)),
        "resolve_by": utc(T0 + timedelta(minutes=240)), "due_at": utc(T0 + timedelta(minutes=30)),
        "state": "on_track",
    }
    other = ingest(priority="low")
    assert staff_client.get(f"/api/demands/{other.pk}/").json()["sla"] is None


def test_the_api_lists_breached_and_breaching_soon_and_sorts_by_due_time(clock, staff_client):
    make_policy(respond_minutes=120, resolve_minutes=None)
    old = ingest()
    clock.advance(minutes=100)
    middle = ingest()
    clock.advance(minutes=50)  # old: due 20 min ago; middle: due in 70 min
    newest = ingest()  # due in 120 min
    ingest(priority="low")  # no SLA
    breached = staff_client.get("/api/demands/?sla=breached").json()
    assert [d["pk"] for d in breached["results"]] == [old.pk]
    soon = staff_client.get("/api/demands/?sla=breaching_soon").json()
    assert [d["pk"] for d in soon["results"]] == []  # 70 min is not soon, and not at risk yet
    clock.advance(minutes=15)  # middle due in 55 min
    assert [d["pk"] for d in staff_client.get("/api/demands/?sla=breaching_soon").json()["results"]] == [middle.pk]
    by_due = staff_client.get("/api/demands/?sort=due&limit=2").json()
    assert [d["pk"] for d in by_due["results"]] == [old.pk, middle.pk]
    rest = staff_client.get(by_due["next"]).json()
    assert [d["pk"] for d in rest["results"]] == [newest.pk] and rest["next"] is None
    assert staff_client.get("/api/demands/?sla=whenever").status_code == 400


def test_the_list_shows_the_countdown_and_overdue_in_red(clock, staff_client):
    make_policy()
    due_soon, overdue = ingest(), ingest()
    Demand.objects.filter(pk=overdue.pk).update(sla_due_at=T0 - timedelta(minutes=5), sla_state="breached")
    clock.advance(minutes=18)
    html = staff_client.get("/demands/").content.decode()
    row = html[html.index(f'id="demand-{due_soon.pk}"'):]
    assert "due" in row[:3000] and "12" in row[: row.index("</tr>")]
    overdue_row = html[html.index(f'id="demand-{overdue.pk}"'):]
    assert "sla-overdue" in overdue_row[: overdue_row.index("</tr>")]
    filtered = staff_client.get("/demands/?sla=breached").content.decode()
    assert f'id="demand-{overdue.pk}"' in filtered and f'id="demand-{due_soon.pk}"' not in filtered


def test_the_detail_page_shows_the_sla_and_the_policy_in_history(clock, staff_client, django_user_model):
    lead = django_user_model.objects.create_user(username="lead", is_staff=True)
    make_policy(name="Gold", steps=[{"after_minutes": 5, "condition": "not_acknowledged", "notify_user": lead}])
    demand = ingest()
    sla_tick(now=clock.advance(minutes=6))
    html = staff_client.get(f"/demands/{demand.pk}/").content.decode()
    assert "Gold" in html and "respond by" in html
    assert "SLA policy “Gold”" in html and "escalated:" in html
    history = staff_client.get(f"/api/demands/{demand.pk}/history/").json()["results"]
    assert any(entry["sla_policy"] == {"id": demand.sla_policy_id, "name": "Gold"} for entry in history)


def test_waiting_on_the_reporter_is_a_status_people_can_choose(clock, staff_client):
    make_policy()
    demand = ingest()
    response = staff_client.patch(f"/api/demands/{demand.pk}/", {"status": "waiting"}, content_type="application/json")
    assert response.status_code == 200 and response.json()["sla"]["state"] == "paused"


def test_staff_see_the_policies_but_only_those_allowed_change_them(clock, staff_client, staff_user):
    make_policy(name="Gold")
    page = staff_client.get("/sla/")
    assert page.status_code == 200 and "Gold" in page.content.decode()
    assert staff_client.get("/sla/new/").status_code == 403


def test_a_policy_is_created_with_its_steps_on_the_page_and_open_demands_are_re_timed(clock, staff_client, staff_user):
    staff_user.user_permissions.add(Permission.objects.get(codename="change_slapolicy"))
    demand = ingest(priority="high")
    assert demand.sla_policy is None
    form = {
        "name": "High", "order": "10", "enabled": "on", "priorities": ["high"], "respond_minutes": "60",
        "resolve_minutes": "", "at_risk_percent": "75", "time_zone": "Asia/Shanghai",
        "business_hours": "mon-fri 09:00-18:00", "holidays": "2026-12-25",
        "steps-TOTAL_FORMS": "1", "steps-INITIAL_FORMS": "0", "steps-MIN_NUM_FORMS": "0", "steps-MAX_NUM_FORMS": "1000",
        "steps-0-after_minutes": "30", "steps-0-condition": "not_acknowledged", "steps-0-raise_priority": "urgent",
    }
    response = staff_client.post("/sla/new/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    policy = SlaPolicy.objects.get()
    assert policy.priorities == ["high"] and policy.steps.get().raise_priority == "urgent"
    sla_tick(now=clock())
    demand.refresh_from_db()
    assert demand.sla_policy == policy and demand.respond_by == T0 + timedelta(minutes=60)


def test_the_policy_page_refuses_unreadable_hours_and_a_policy_without_targets(clock, staff_client, staff_user):
    staff_user.user_permissions.add(Permission.objects.get(codename="change_slapolicy"))
    form = {"name": "Bad", "order": "1", "priorities": ["urgent"], "at_risk_percent": "80", "business_hours": "weekdays 9-5",
            "steps-TOTAL_FORMS": "0", "steps-INITIAL_FORMS": "0", "steps-MIN_NUM_FORMS": "0", "steps-MAX_NUM_FORMS": "1000"}
    response = staff_client.post("/sla/new/", form)
    assert response.status_code == 200 and not SlaPolicy.objects.exists()
    errors = response.context["form"].errors
    assert "business_hours" in errors and "respond_minutes" in errors


def test_the_admin_edits_policies(clock, admin_client):
    policy = make_policy()
    assert admin_client.get(f"/admin/demands/slapolicy/{policy.pk}/change/").status_code == 200
    assert admin_client.get("/admin/demands/escalationfiring/").status_code == 200


def test_the_sla_pages_and_badge_are_in_chinese(clock, staff_client, staff_user):
    services.preference_update(user=staff_user, language="zh-hans")
    make_policy(name="金牌")
    ingest()
    assert "SLA 策略" in staff_client.get("/sla/").content.decode()
    page = staff_client.get("/demands/").content.decode()
    assert "到期" in page and "即将超时" in page  # the badge and the "breaching soon" filter
    translation.activate("en")  # the request's language stays active in this thread
