"""The JSON API's triage actions (PATCH a demand, POST a comment) and a demand's history."""

import json

import pytest
from django.test import Client
from django.utils import timezone, translation

from demands.pipeline import parse as ingest_module
from demands import services
from demands.pipeline import rules
from demands.pipeline.persist import persist_batch
from demands.models import Demand, DemandEvent, Priority, Rule, Status, Team
from demands.pipeline.rules import RuleBook

from .conftest import REFERENCE, record, role

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _isolated(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    yield
    translation.deactivate()
    timezone.deactivate()


@pytest.fixture
def demand() -> Demand:
    [created] = persist_batch([record(REFERENCE)]).created
    return Demand.objects.get(pk=created.pk)


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user(username="bob", password="x", is_staff=True, first_name="Bob", last_name="Li")


@pytest.fixture
def other_triager(django_user_model):
    user = django_user_model.objects.create_user(username="alice", password="x", is_staff=True)
    user.groups.add(role("Triagers"))
    return user


def patch(client, demand, body, **kwargs):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.patch(f"/api/demands/{demand.pk}/", data=data, content_type="application/json", **kwargs)


# -- PATCH --------------------------------------------------------------------------------------

def test_patch_changes_status_and_answers_the_new_state(staff_client, demand):
    response = patch(staff_client, demand, {"status": "in_progress", "version": 0})
    assert response.status_code == 200
    data = response.json()
    assert (data["status"], data["version"]) == ("in_progress", 1)
    demand.refresh_from_db()
    assert demand.status == Status.IN_PROGRESS


def test_patch_with_several_fields_applies_each_with_the_version_it_produced(staff_client, demand, bob):
    response = patch(staff_client, demand, {"priority": "urgent", "status": "triaged", "assignee": "bob", "version": 0})
    assert response.status_code == 200
    data = response.json()
    assert (data["priority"], data["status"], data["assignee"]["username"], data["version"]) == ("urgent", "triaged", "bob", 3)
    assert [e.kind for e in DemandEvent.objects.order_by("id")] == ["assignment", "priority", "status"]


@pytest.mark.parametrize("value", ["bob", "BOB_ID", "BOB_ID_STRING"])
def test_patch_assignee_takes_an_id_or_a_username(value, staff_client, demand, bob):
    value = {"BOB_ID": bob.pk, "BOB_ID_STRING": str(bob.pk)}.get(value, value)
    response = patch(staff_client, demand, {"assignee": value})
    assert response.status_code == 200
    assert response.json()["assignee"] == {"id": bob.pk, "username": "bob", "name": "Bob Li"}
    demand.refresh_from_db()
    assert demand.assignee == bob


def test_patch_assignee_null_clears_it_and_keeps_the_team(staff_client, demand, bob):
    team = Team.objects.create(name="Payments")
    Demand.objects.filter(pk=demand.pk).update(assignee=bob, team=team)
    response = patch(staff_client, demand, {"assignee": None})
    assert response.status_code == 200
    assert (response.json()["assignee"], response.json()["team"]) == (None, {"id": team.pk, "name": "Payments"})
    demand.refresh_from_db()
    assert (demand.assignee, demand.team) == (None, team)


@pytest.mark.parametrize("value", ["Payments", "TEAM_ID"])
def test_patch_team_takes_an_id_or_a_name_and_null_clears_it(value, staff_client, demand, bob):
    team = Team.objects.create(name="Payments")
    Demand.objects.filter(pk=demand.pk).update(assignee=bob)
    assert patch(staff_client, demand, {"team": team.pk if value == "TEAM_ID" else value}).json()["team"]["name"] == "Payments"
    demand.refresh_from_db()
    assert (demand.team, demand.assignee) == (team, bob)
    assert patch(staff_client, demand, {"team": None}).json()["team"] is None
    demand.refresh_from_db()
    assert demand.team is None


def test_patch_priority(staff_client, demand):
    assert patch(staff_client, demand, {"priority": "low"}).json()["priority"] == "low"
    demand.refresh_from_db()
    assert demand.priority == Priority.LOW


def test_a_stale_version_gets_409_naming_who_changed_it(staff_client, demand, other_triager):
    services.demand_set_priority(demand=demand, priority=Priority.HIGH, actor=other_triager)
    response = patch(staff_client, demand, {"status": "resolved", "version": 0})
    assert response.status_code == 409
    assert "changed meanwhile by alice" in response.json()["error"]
    demand.refresh_from_db()
    assert (demand.status, demand.version) == (Status.NEW, 1)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "at least one of"),
        ({"colour": "red"}, "at least one of"),
        ({"status": "done"}, "Unknown status"),
        ({"priority": "p9"}, "Unknown priority"),
        ({"assignee": "nobody-here"}, "no active staff member"),
        ({"assignee": "customer"}, "no active staff member"),
        ({"team": "no such team"}, "no team"),
        ({"status": "resolved", "version": "seven"}, "version must be an integer"),
        ({"status": "duplicate"}, "naming the demand it duplicates"),
    ],
)
def test_bad_requests_get_400_with_a_clear_error_and_change_nothing(body, error, staff_client, demand, plain_user):
    response = patch(staff_client, demand, body)
    assert response.status_code == 400
    assert error in response.json()["error"]
    demand.refresh_from_db()
    assert (demand.status, demand.priority, demand.assignee, demand.version) == (Status.NEW, Priority.NORMAL, None, 0)


def test_an_invalid_transition_gets_400(staff_client, demand):
    Demand.objects.filter(pk=demand.pk).update(status=Status.RESOLVED)
    response = patch(staff_client, demand, {"status": "in_progress"})
    assert response.status_code == 400
    assert response.json()["error"] == "A Resolved demand cannot become In progress."


def test_a_patch_that_fails_in_part_changes_nothing(staff_client, demand, bob):
    response = patch(staff_client, demand, {"assignee": "bob", "priority": "high", "status": "done"})
    assert response.status_code == 400
    demand.refresh_from_db()
    assert (demand.assignee, demand.priority, demand.version) == (None, Priority.NORMAL, 0)


def test_patching_an_unknown_demand_is_404(staff_client):
    response = staff_client.patch("/api/demands/999999/", data="{}", content_type="application/json")
    assert response.status_code == 404


def test_a_viewer_can_read_but_gets_403_on_patch_and_comment(client, viewer_user, demand):
    client.force_login(viewer_user)
    assert client.get(f"/api/demands/{demand.pk}/").status_code == 200
    response = patch(client, demand, {"status": "resolved"})
    assert response.status_code == 403
    assert response.json()["error"] == "You can look at demands but not change them."
    comment = client.post(f"/api/demands/{demand.pk}/comments/", data={"body": "hi"}, content_type="application/json")
    assert comment.status_code == 403
    demand.refresh_from_db()
    assert demand.status == Status.NEW
    assert DemandEvent.objects.count() == 0


def test_anonymous_gets_401_and_non_staff_403(client, plain_user, demand):
    assert patch(client, demand, {"status": "resolved"}).status_code == 401
    assert client.get(f"/api/demands/{demand.pk}/history/").status_code == 401
    client.force_login(plain_user)
    assert patch(client, demand, {"status": "resolved"}).status_code == 403
    assert client.post(f"/api/demands/{demand.pk}/comments/", data={"body": "x"}, content_type="application/json").status_code == 403
    demand.refresh_from_db()
    assert demand.status == Status.NEW


def test_a_patch_without_a_csrf_token_is_refused(staff_user, demand):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(staff_user)
    assert patch(browser, demand, {"status": "resolved"}).status_code == 403
    demand.refresh_from_db()
    assert demand.status == Status.NEW
    browser.get("/demands/")  # sets the CSRF cookie, as the dashboard page does
    token = browser.cookies["csrftoken"].value
    assert patch(browser, demand, {"status": "resolved"}, headers={"X-CSRFToken": token}).status_code == 200
    demand.refresh_from_db()
    assert demand.status == Status.RESOLVED


def test_a_comment_post_without_a_csrf_token_is_refused(staff_user, demand):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(staff_user)
    response = browser.post(f"/api/demands/{demand.pk}/comments/", data={"body": "x"}, content_type="application/json")
    assert response.status_code == 403
    assert DemandEvent.objects.count() == 0


# -- comments -----------------------------------------------------------------------------------

def test_posting_a_comment_answers_201_with_the_history_entry(staff_client, staff_user, demand):
    response = staff_client.post(f"/api/demands/{demand.pk}/comments/", data={"body": "已联系用户 see https://x.example"},
                                 content_type="application/json")
    assert response.status_code == 201
    data = response.json()
    event = DemandEvent.objects.get()
    assert (data["id"], data["kind"], data["body"], data["actor"]["username"]) == (event.pk, "comment", "已联系用户 see https://x.example", "triager")
    demand.refresh_from_db()
    assert demand.version == 0


@pytest.mark.parametrize("body", ["{oops", '"just text"', '{"body": 5}', '{"body": "   "}', '{"text": "hi"}'])
def test_a_bad_comment_gets_400(body, staff_client, demand):
    response = staff_client.post(f"/api/demands/{demand.pk}/comments/", data=body, content_type="application/json")
    assert response.status_code == 400
    assert "error" in response.json()
    assert DemandEvent.objects.count() == 0


def test_commenting_on_an_unknown_demand_is_404(staff_client):
    assert staff_client.post("/api/demands/999999/comments/", data={"body": "x"}, content_type="application/json").status_code == 404


# -- history ------------------------------------------------------------------------------------

def test_history_lists_rule_and_human_changes_in_order(staff_client, staff_user, monkeypatch):
    monkeypatch.setattr(rules, "RELOAD_EVERY", 0)
    monkeypatch.setattr(ingest_module, "_default_rulebook", RuleBook())
    routing = Rule.objects.create(name="slow pages", match_keywords="太慢", set_priority=Priority.HIGH)
    [created] = persist_batch([record(REFERENCE)]).created
    demand = Demand.objects.get(pk=created.pk)
    patch(staff_client, demand, {"status": "triaged"})
    staff_client.post(f"/api/demands/{demand.pk}/comments/", data={"body": "看一下"}, content_type="application/json")
    patch(staff_client, demand, {"priority": "urgent"})
    results = staff_client.get(f"/api/demands/{demand.pk}/history/").json()["results"]
    assert [(e["kind"], e["old"], e["new"], e["body"]) for e in results] == [
        ("priority", "normal", "high", ""),
        ("status", "new", "triaged", ""),
        ("comment", "", "", "看一下"),
        ("priority", "high", "urgent", ""),
    ]
    assert results[0]["actor"] is None and results[0]["rule"] == {"id": routing.pk, "name": "slow pages"}
    assert {e["actor"]["username"] for e in results[1:]} == {"triager"}
    assert results[0]["id"] is None  # what rules did at ingest is kept on the demand's row
    assert [e["id"] for e in results[1:]] == sorted(e["id"] for e in results[1:])


def test_history_of_an_unknown_demand_is_404(staff_client):
    assert staff_client.get("/api/demands/999999/history/").status_code == 404


def test_a_demand_without_changes_has_an_empty_history(staff_client, demand):
    assert staff_client.get(f"/api/demands/{demand.pk}/history/").json() == {"results": []}


def test_a_deeply_nested_body_is_a_400_not_a_server_error(staff_client):
    from demands.pipeline.persist import persist_batch
    from demands.models import Demand

    from .conftest import REFERENCE, record

    persist_batch([record(REFERENCE, offset=0)])
    pk = Demand.objects.get().pk
    body = "[" * 100_000 + "]" * 100_000
    for response in (
        staff_client.patch(f"/api/demands/{pk}/", body, content_type="application/json"),
        staff_client.post(f"/api/demands/{pk}/comments/", body, content_type="application/json"),
    ):
        assert response.status_code == 400
        assert "nested too deeply" in response.json()["error"]
