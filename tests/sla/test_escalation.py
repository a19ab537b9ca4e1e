"""Escalation steps: each fires once, as the system named by its policy, stops when a person acts,
and an outage fires only the latest due step."""

from datetime import timedelta

import pytest

from demands import services
from demands.models import Demand, DemandEvent, Notification, Priority, Team
from demands.sla.escalation import sla_tick
from demands.sla.models import EscalationFiring, EscalationStep

from .conftest import ingest, make_policy

pytestmark = pytest.mark.django_db
NOT_ACK = EscalationStep.Condition.NOT_ACKNOWLEDGED
NOT_RESOLVED = EscalationStep.Condition.NOT_RESOLVED


@pytest.fixture
def on_call(django_user_model):
    return django_user_model.objects.create_user(username="oncall", is_staff=True)


@pytest.fixture
def lead(django_user_model):
    return django_user_model.objects.create_user(username="lead", is_staff=True)


def test_a_step_notifies_raises_the_priority_and_reassigns_once_recorded_as_the_policy(clock, on_call, lead):
    team = Team.objects.create(name="on call")
    team.members.add(on_call)
    policy = make_policy(match_priorities="high", steps=[
        {"after_minutes": 15, "condition": NOT_ACK, "notify_user": lead, "raise_priority": Priority.URGENT,
         "assign_user": on_call, "assign_team": team},
    ])
    demand = ingest(priority="high")
    sla_tick(now=clock.advance(minutes=14))
    assert not EscalationFiring.objects.exists()
    sla_tick(now=clock.advance(minutes=2))
    sla_tick(now=clock.advance(minutes=2))  # fires once only
    demand.refresh_from_db()
    assert (demand.priority, demand.assignee, demand.team) == (Priority.URGENT, on_call, team)
    assert demand.first_action_at is None  # the system acting is not a response
    entries = list(demand.events.order_by("id").values_list("kind", "actor", "sla_policy"))
    assert (DemandEvent.Kind.ESCALATION, None, policy.pk) in entries
    assert (DemandEvent.Kind.PRIORITY, None, policy.pk) in entries
    assert (DemandEvent.Kind.ASSIGNMENT, None, policy.pk) in entries
    assert EscalationFiring.objects.get().outcome == EscalationFiring.Outcome.FIRED
    told = Notification.objects.filter(user=lead, kind=Notification.Kind.ESCALATION)
    assert told.count() == 1 and "SLA policy “Urgent”" in told.get().text
    assigned = Notification.objects.get(user=on_call, kind=Notification.Kind.ASSIGNED)
    assert assigned.text.startswith("SLA policy “Urgent”")


def test_a_reply_stops_the_no_first_response_escalation(clock, staff_user, lead):
    """Zammad escalates tickets that were answered; here a reply acknowledges the demand."""
    make_policy(respond_minutes=60, steps=[
        {"after_minutes": 10, "condition": NOT_ACK, "notify_user": lead},
        {"after_minutes": 20, "condition": NOT_ACK, "notify_user": lead, "raise_priority": Priority.URGENT},
    ])
    demand = ingest(priority="urgent")
    sla_tick(now=clock.advance(minutes=11))
    assert Notification.objects.filter(user=lead).count() == 1
    clock.advance(minutes=1)
    services.demand_comment(demand=demand, body="Looking into it", actor=staff_user)
    for _ in range(6):
        sla_tick(now=clock.advance(minutes=10))
    assert Notification.objects.filter(user=lead).count() == 1
    assert EscalationFiring.objects.count() == 1
    demand.refresh_from_db()
    assert demand.sla_check_at is None or demand.sla_check_at > clock.now


def test_any_triage_action_by_a_person_acknowledges_too(clock, staff_user, lead):
    make_policy(steps=[{"after_minutes": 10, "condition": NOT_ACK, "notify_user": lead}])
    demand = ingest()
    services.demand_assign(demand=demand, assignee=staff_user, actor=staff_user)
    sla_tick(now=clock.advance(minutes=20))
    assert not Notification.objects.filter(user=lead).exists()


def test_a_not_resolved_step_still_fires_after_a_reply(clock, staff_user, lead):
    make_policy(steps=[{"after_minutes": 60, "condition": NOT_RESOLVED, "notify_user": lead}])
    demand = ingest()
    services.demand_comment(demand=demand, body="on it", actor=staff_user)
    sla_tick(now=clock.advance(minutes=61))
    assert Notification.objects.filter(user=lead, kind=Notification.Kind.ESCALATION).count() == 1


def test_after_an_outage_only_the_latest_due_step_fires_and_the_earlier_are_recorded_as_skipped(clock, lead, on_call):
    policy = make_policy(resolve_minutes=600, steps=[
        {"after_minutes": 10, "condition": NOT_ACK, "notify_user": lead},
        {"after_minutes": 20, "condition": NOT_ACK, "notify_user": lead},
        {"after_minutes": 30, "condition": NOT_ACK, "assign_user": on_call},
        {"after_minutes": 300, "condition": NOT_RESOLVED, "notify_user": lead},
    ])
    demand = ingest()
    sla_tick(now=clock.advance(minutes=45))  # the monitor was down for 45 minutes
    outcomes = dict(EscalationFiring.objects.values_list("step__after_minutes", "outcome"))
    assert outcomes == {10: "skipped", 20: "skipped", 30: "fired"}
    assert not Notification.objects.filter(user=lead, kind=Notification.Kind.ESCALATION).exists()
    demand.refresh_from_db()
    assert demand.assignee == on_call
    entry = demand.events.get(kind=DemandEvent.Kind.ESCALATION)
    assert "10 min" in entry.body and "20 min" in entry.body
    assert demand.sla_check_at == demand.received_at + timedelta(minutes=300)  # the next step still to come
    sla_tick(now=clock.advance(minutes=1))
    assert EscalationFiring.objects.count() == 3
    assert policy.steps.count() == 4


def test_a_paused_demand_does_not_escalate_and_its_steps_move_by_the_wait(clock, staff_user, lead):
    make_policy(steps=[{"after_minutes": 60, "condition": NOT_RESOLVED, "notify_user": lead}])
    demand = ingest()
    clock.advance(minutes=30)
    services.demand_change_status(demand=demand, status="waiting", actor=staff_user)
    sla_tick(now=clock.advance(minutes=60))
    assert not EscalationFiring.objects.exists()
    services.demand_change_status(demand=demand, status="in_progress", actor=staff_user)
    sla_tick(now=clock.advance(minutes=20))  # 50 min of running time
    assert not EscalationFiring.objects.exists()
    sla_tick(now=clock.advance(minutes=11))
    assert EscalationFiring.objects.count() == 1


def test_a_resolved_demand_never_escalates(clock, staff_user, lead):
    make_policy(steps=[{"after_minutes": 60, "condition": NOT_RESOLVED, "notify_user": lead}])
    demand = ingest()
    services.demand_change_status(demand=demand, status="resolved", actor=staff_user)
    sla_tick(now=clock.advance(hours=2))
    assert not EscalationFiring.objects.exists()
    assert Demand.objects.get(pk=demand.pk).sla_check_at is None


def test_the_claim_row_means_a_second_timer_does_nothing(clock, lead, monkeypatch):
    """The guard itself: a timer that read the steps before another one's claim committed still
    fires nothing — its insert of the (demand, step) row conflicts."""
    from demands.sla import escalation

    monkeypatch.setattr(escalation, "done_steps", lambda demand: set())
    policy = make_policy(steps=[{"after_minutes": 10, "condition": NOT_ACK, "notify_user": lead}])
    demand = ingest()
    EscalationFiring.objects.create(demand=demand, step=policy.steps.get(), outcome="fired")
    Demand.objects.filter(pk=demand.pk).update(sla_check_at=clock.now)  # a stale timer's view
    sla_tick(now=clock.advance(minutes=15))
    assert not Notification.objects.filter(kind=Notification.Kind.ESCALATION).exists()
