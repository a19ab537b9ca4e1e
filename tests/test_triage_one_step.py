"""One-step triage (demands/triage/): every field and a comment in one service call and one post,
a refused field refuses the whole step, and "changed meanwhile" says what changed and keeps the rest."""

import re

import pytest
from django.urls import reverse
from django.utils import translation

from demands import services
from demands.models import Demand, DemandEvent, Notification, Status, Team
from demands.pipeline.persist import persist_batch
from demands.triage import services as triage

from .conftest import REFERENCE, record, role

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _isolated(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    yield
    translation.deactivate()


@pytest.fixture
def demand() -> Demand:
    return Demand.objects.get(pk=persist_batch([record(REFERENCE, offset=1)]).created[0].pk)


@pytest.fixture
def alice(django_user_model):
    user = django_user_model.objects.create_user(username="alice", password="pw-alice-123", is_staff=True)
    user.groups.add(role("Triagers"))
    return user


def changes(demand) -> list[tuple[str, str, str]]:
    return list(demand.events.order_by("id").values_list("kind", "old_value", "new_value"))


# -- the service ------------------------------------------------------------------------------------
def test_every_field_and_a_comment_change_in_one_step_with_one_version_bump(demand, staff_user, alice):
    team = Team.objects.create(name="Payments")
    outcome = triage.demand_triage(
        demand=demand, actor=staff_user, expected_version=demand.version, status=Status.IN_PROGRESS,
        priority="urgent", assignee=alice, team=team, comment="On it.",
    )
    fresh = Demand.objects.get(pk=demand.pk)
    assert (fresh.status, fresh.priority, fresh.assignee, fresh.team) == (Status.IN_PROGRESS, "urgent", alice, team)
    assert fresh.version == demand.version + 1
    assert changes(fresh) == [("status", "new", "in_progress"), ("priority", "normal", "urgent"),
                              ("assignment", "", "alice"), ("team", "", "Payments"), ("comment", "", "")]
    assert [name for name, _value in outcome.changed] == ["status", "priority", "assignee", "team"]
    assert outcome.comment.body == "On it." and outcome.meanwhile == [] and outcome.conflicts == {}
    assert set(Notification.objects.filter(user=alice).values_list("kind", flat=True)) == {"assigned", "comment"}


def test_an_invalid_transition_refuses_the_whole_step_and_changes_nothing(demand, staff_user, alice):
    services.demand_change_status(demand=demand, status=Status.RESOLVED, actor=staff_user)
    before = Demand.objects.get(pk=demand.pk)
    with pytest.raises(services.InvalidTransition, match="cannot become"):
        triage.demand_triage(demand=before, actor=staff_user, expected_version=before.version,
                             priority="urgent", assignee=alice, status=Status.IN_PROGRESS, comment="lost?")
    after = Demand.objects.get(pk=demand.pk)
    assert (after.version, after.priority, after.assignee_id) == (before.version, before.priority, None)
    assert changes(after) == changes(before)  # no history entry, no comment


def test_a_comment_alone_does_not_bump_the_version(demand, staff_user):
    triage.demand_triage(demand=demand, actor=staff_user, expected_version=demand.version, comment="Looking.")
    fresh = Demand.objects.get(pk=demand.pk)
    assert fresh.version == demand.version and changes(fresh) == [("comment", "", "")]


def test_a_viewer_changes_nothing(demand, viewer_user):
    with pytest.raises(services.PermissionDenied):
        triage.demand_triage(demand=demand, actor=viewer_user, priority="urgent")
    assert Demand.objects.get(pk=demand.pk).priority == "normal"


def test_changed_meanwhile_says_what_changed_and_keeps_the_choices_nobody_else_touched(demand, staff_user, alice):
    seen, version = 0, demand.version
    services.demand_set_priority(demand=demand, priority="urgent", actor=alice)  # meanwhile
    outcome = triage.demand_triage(demand=demand, actor=staff_user, expected_version=version, seen_event=seen,
                                   priority="low", status=Status.TRIAGED)
    fresh = Demand.objects.get(pk=demand.pk)
    assert outcome.meanwhile == ["alice set the priority to Urgent"]
    assert outcome.conflicts == {"priority": "low"}
    assert (fresh.status, fresh.priority) == (Status.TRIAGED, "urgent")  # status applied, Alice's priority kept
    assert [name for name, _value in outcome.changed] == ["status"]


def test_changed_meanwhile_to_the_same_choice_is_no_conflict(demand, staff_user, alice):
    version = demand.version
    services.demand_set_priority(demand=demand, priority="urgent", actor=alice)
    outcome = triage.demand_triage(demand=demand, actor=staff_user, expected_version=version, seen_event=0, priority="urgent")
    assert outcome.conflicts == {} and outcome.meanwhile == ["alice set the priority to Urgent"]


def test_a_stale_version_without_a_mark_of_what_was_seen_applies_nothing_it_cannot_place(demand, staff_user, alice):
    version = demand.version
    services.demand_set_priority(demand=demand, priority="urgent", actor=alice)
    outcome = triage.demand_triage(demand=demand, actor=staff_user, expected_version=version, status=Status.TRIAGED)
    assert outcome.conflicts == {"status": Status.TRIAGED} and outcome.changed == []
    assert Demand.objects.get(pk=demand.pk).status == Status.NEW


# -- the page ------------------------------------------------------------------------------------------
def post(client, demand, htmx=False, **data):
    form = {"version": demand.version, "seen": 0, "was_status": demand.status, "was_priority": demand.priority,
            "was_assignee": demand.assignee_id or "", "was_team": demand.team_id or "",
            "status": demand.status, "priority": demand.priority, "assignee": demand.assignee_id or "",
            "team": demand.team_id or "", "body": "", **data}
    headers = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "triage-panel"} if htmx else {}
    return client.post(reverse("demands:triage", args=[demand.pk]), form, **headers)


def test_the_detail_page_has_one_triage_form_with_every_field_and_the_comment(staff_client, demand):
    page = staff_client.get(reverse("demands:detail", args=[demand.pk])).content.decode()
    form = re.search(r'<form id="triage-form".*?</form>', page, re.S).group(0)
    for name in ("status", "priority", "assignee", "team", "body", "version", "seen"):
        assert f'name="{name}"' in form, name
    assert form.count('type="submit"') == 1
    assert 'src="/static/js/triage.js"' in page


def test_a_plain_post_applies_every_changed_field_and_the_comment_then_redirects(staff_client, staff_user, demand):
    response = post(staff_client, demand, status="in_progress", priority="urgent", assignee=staff_user.pk, body="Mine.")
    assert response.status_code == 302 and response.url == reverse("demands:detail", args=[demand.pk])
    fresh = Demand.objects.get(pk=demand.pk)
    assert (fresh.status, fresh.priority, fresh.assignee, fresh.version) == ("in_progress", "urgent", staff_user, demand.version + 1)
    page = staff_client.get(response.url).content.decode()
    assert "Status → In progress · Priority → Urgent · Assignee → triager · Comment added" in page


def test_unchanged_fields_of_the_form_are_not_changes(staff_client, demand):
    post(staff_client, demand, body="Only a comment.")
    assert changes(Demand.objects.get(pk=demand.pk)) == [("comment", "", "")]


def test_an_htmx_post_answers_the_panel_the_summary_the_history_and_a_polite_toast(staff_client, demand):
    response = post(staff_client, demand, htmx=True, status="triaged")
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html
    assert html.lstrip().startswith('<section class="card triage" id="triage-panel"')
    assert re.search(r'id="demand-summary" data-version="\d+" hx-swap-oob="true"', html)
    assert 'id="history" hx-swap-oob="true"' in html and "event-status" in html
    assert '<div id="toasts" hx-swap-oob="beforeend">' in html and "Status → Triaged" in html
    assert f'name="version" value="{demand.version + 1}"' in html


def test_an_htmx_post_from_the_list_answers_only_the_toast(staff_client, staff_user, demand):
    html = staff_client.post(reverse("demands:triage", args=[demand.pk]), {"assignee": "me", "from": "list"},
                             HTTP_HX_REQUEST="true").content.decode()
    assert "triage-panel" not in html and "Assignee → triager" in html
    assert Demand.objects.get(pk=demand.pk).assignee == staff_user


def test_a_refused_step_is_said_in_the_panel_and_changes_nothing(staff_client, demand):
    services.demand_change_status(demand=demand, status="resolved", actor=None)
    demand.refresh_from_db()
    html = post(staff_client, demand, htmx=True, status="rejected", priority="urgent").content.decode()
    assert 'role="alert"' in html and "cannot become" in html
    assert Demand.objects.get(pk=demand.pk).priority == "normal"


def test_changed_meanwhile_in_the_page_says_who_changed_what_and_prefills_the_conflicting_choice(staff_client, demand, alice):
    stale = Demand.objects.get(pk=demand.pk)
    services.demand_set_priority(demand=demand, priority="urgent", actor=alice)
    html = post(staff_client, stale, htmx=True, status="triaged", priority="low").content.decode()
    assert "Changed meanwhile:" in html and "alice set the priority to Urgent" in html
    assert re.search(r'<option value="low" selected>', html)  # one click on Save applies it
    assert "Status → Triaged" in html
    fresh = Demand.objects.get(pk=demand.pk)
    assert (fresh.status, fresh.priority) == ("triaged", "urgent")


def test_the_panel_speaks_chinese(staff_client, staff_user, demand):
    from demands.models import UserPreference
    UserPreference.objects.create(user=staff_user, language="zh-hans")
    html = post(staff_client, demand, htmx=True, status="triaged").content.decode()
    assert "状态 → 已分拣" in html


def test_the_users_own_earlier_change_is_no_conflict(demand, staff_user):
    # A quick second key (or another tab) posts the version before the user's own first change.
    version = demand.version
    triage.demand_triage(demand=demand, actor=staff_user, expected_version=version, status=Status.TRIAGED)
    outcome = triage.demand_triage(demand=demand, actor=staff_user, expected_version=version, seen_event=0, priority="high")
    fresh = Demand.objects.get(pk=demand.pk)
    assert outcome.conflicts == {} and outcome.meanwhile == []
    assert (fresh.status, fresh.priority, fresh.version) == (Status.TRIAGED, "high", version + 2)


def test_a_plain_post_that_meets_a_change_meanwhile_says_so_in_messages(staff_client, demand, alice):
    stale = Demand.objects.get(pk=demand.pk)
    services.demand_set_priority(demand=demand, priority="urgent", actor=alice)
    response = post(staff_client, stale, priority="low")
    page = staff_client.get(response.url).content.decode()
    assert "Changed meanwhile: alice set the priority to Urgent." in page
    assert "Not applied, because someone else changed it: Priority." in page
    assert Demand.objects.get(pk=demand.pk).priority == "urgent"


def test_an_unknown_assignee_refuses_the_step(staff_client, demand):
    response = post(staff_client, demand, htmx=True, assignee="99999", priority="urgent")
    assert "No such staff member." in response.content.decode()
    assert Demand.objects.get(pk=demand.pk).priority == "normal"
