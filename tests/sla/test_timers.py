"""SLA due times and states: at ingest, through the services, paused while waiting, in the tick."""

from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from demands import services
from demands.models import Demand, DemandEvent, Notification, SlaState, Status, Team
from demands.sla.escalation import sla_tick
from demands.sla.models import SlaPolicy

from .conftest import SHANGHAI, T0, ingest, make_policy

pytestmark = pytest.mark.django_db
OFFICE = {"time_zone": "Asia/Shanghai", "business_hours": "mon-fri 09:00-18:00"}


def test_a_matching_demand_gets_its_policy_and_due_times_at_ingest(clock):
    policy = make_policy()
    demand = ingest()
    assert demand.sla_policy == policy
    assert demand.respond_by == T0 + timedelta(minutes=30)
    assert demand.resolve_by == T0 + timedelta(minutes=240)
    assert demand.sla_due_at == demand.respond_by
    assert demand.sla_state == SlaState.ON_TRACK
    assert demand.sla_check_at == T0 + timedelta(minutes=24)  # 80 % of the first-response target


def test_a_demand_no_policy_matches_has_no_sla(clock):
    make_policy(match_types="error_log")
    demand = ingest(priority="urgent", type="user_feedback")
    assert demand.sla_policy is None and demand.sla_state == "" and demand.sla_check_at is None


def test_the_first_matching_policy_in_order_wins_and_disabled_ones_are_ignored(clock):
    make_policy(name="disabled", order=1, enabled=False)
    make_policy(name="feedback", order=5, match_types="user_feedback", respond_minutes=10)
    make_policy(name="any urgent", order=9)
    assert ingest(type="user_feedback").sla_policy.name == "feedback"
    assert ingest(type="error_log").sla_policy.name == "any urgent"


def test_a_demand_arriving_at_night_is_due_in_business_time(clock):
    make_policy(**OFFICE)
    clock.now = datetime(2026, 12, 1, 23, 0, tzinfo=SHANGHAI)
    demand = ingest()
    assert demand.respond_by == datetime(2026, 12, 2, 9, 30, tzinfo=SHANGHAI)


def test_ingest_matches_from_the_cached_policies_without_a_query_per_batch(clock):
    make_policy()
    ingest()  # loads the cache
    with CaptureQueriesContext(connection) as queries:
        ingest()
    assert not [q for q in queries.captured_queries if "slapolicy" in q["sql"].lower()]


def test_first_action_is_set_by_people_and_never_by_the_system(clock, staff_user):
    make_policy()
    demand = ingest()
    services.demand_comment(demand=demand, body="note from a rule", actor=None)
    services.demand_set_priority(demand=demand, priority="high", actor=None)
    demand.refresh_from_db()
    assert demand.first_action_at is None
    clock.advance(minutes=5)
    services.demand_comment(demand=demand, body="looking", actor=staff_user)
    demand.refresh_from_db()
    assert demand.first_action_at == clock.now


def test_a_persons_reply_meets_the_response_target_and_the_resolve_target_is_next(clock, staff_user):
    make_policy()
    demand = ingest()
    clock.advance(minutes=10)
    services.demand_comment(demand=demand, body="on it", actor=staff_user)
    demand.refresh_from_db()
    assert demand.sla_due_at == demand.resolve_by
    assert demand.sla_state == SlaState.ON_TRACK


def test_resolving_in_time_is_met_and_late_is_breached(clock, staff_user):
    make_policy()
    first, second = ingest(), ingest()
    clock.advance(minutes=20)
    services.demand_change_status(demand=first, status=Status.RESOLVED, actor=staff_user)
    clock.advance(hours=5)
    services.demand_change_status(demand=second, status=Status.RESOLVED, actor=staff_user)
    first.refresh_from_db(), second.refresh_from_db()
    assert (first.sla_state, second.sla_state) == (SlaState.MET, SlaState.BREACHED)
    assert first.sla_due_at is None and first.sla_check_at is None


def test_waiting_on_the_reporter_pauses_the_clock_and_resuming_extends_the_due_times(clock, staff_user):
    make_policy(**OFFICE)
    demand = ingest()
    clock.advance(minutes=10)
    services.demand_change_status(demand=demand, status=Status.WAITING, actor=staff_user)
    demand.refresh_from_db()
    assert demand.sla_state == SlaState.PAUSED and demand.sla_due_at is None and demand.sla_check_at is None
    resolve_by = demand.resolve_by
    # Waiting from Tuesday 10:10 to Wednesday 10:10: 9 hours of business time.
    clock.now = datetime(2026, 12, 2, 10, 10, tzinfo=SHANGHAI)
    services.demand_change_status(demand=demand, status=Status.IN_PROGRESS, actor=staff_user)
    demand.refresh_from_db()
    assert demand.sla_paused_seconds == 9 * 3600
    assert demand.resolve_by == datetime(2026, 12, 2, 14, 0, tzinfo=SHANGHAI) == resolve_by + timedelta(days=1)
    assert demand.sla_state == SlaState.ON_TRACK


def test_the_waiting_status_moves_only_to_open_or_closing_states():
    from demands.models import TRANSITIONS

    assert Status.WAITING in TRANSITIONS[Status.NEW] and Status.WAITING in TRANSITIONS[Status.IN_PROGRESS]
    assert Status.WAITING not in TRANSITIONS[Status.RESOLVED]
    assert TRANSITIONS[Status.WAITING] >= {Status.IN_PROGRESS, Status.RESOLVED}


def test_raising_the_priority_re_matches_the_policy(clock, staff_user):
    make_policy(name="urgent")
    make_policy(name="normal", match_priorities="normal,low", respond_minutes=600, resolve_minutes=None)
    demand = ingest(priority="normal")
    assert demand.sla_policy.name == "normal"
    services.demand_set_priority(demand=demand, priority="urgent", actor=staff_user)
    demand.refresh_from_db()
    assert demand.sla_policy.name == "urgent" and demand.resolve_by == T0 + timedelta(minutes=240)


def test_a_new_member_is_timed_by_the_priority_and_team_it_takes_from_its_group(clock, staff_user):
    from demands.groups import services as group_services
    from demands.models import DemandGroup

    make_policy(name="urgent")
    make_policy(name="normal", match_priorities="normal,low", respond_minutes=600, resolve_minutes=None)
    ops = Team.objects.create(name="ops")
    make_policy(name="ops high", match_priorities="high", match_team=ops, respond_minutes=5, resolve_minutes=None)
    first = ingest(priority="low")
    group = DemandGroup.objects.get(pk=first.group_id)
    group_services.group_triage(group=group, actor=staff_user, priority="urgent")
    later = ingest(priority="low")
    assert later.group_id == group.pk and later.priority == "urgent"
    assert later.sla_policy.name == "urgent" and later.resolve_by == T0 + timedelta(minutes=240)
    group_services.group_triage(group=group, actor=staff_user, priority="high")
    unmatched = ingest(priority="low")  # high without the team: no policy holds it any more
    assert (unmatched.priority, unmatched.sla_policy, unmatched.sla_state, unmatched.sla_due_at) == ("high", None, "", None)
    group_services.group_triage(group=group, actor=staff_user, team=ops)
    with_team = ingest(priority="low")
    assert (with_team.team_id, with_team.sla_policy.name) == (ops.pk, "ops high")
    assert with_team.respond_by == T0 + timedelta(minutes=5)


def test_a_policy_for_a_team_applies_when_the_team_is_set(clock, staff_user):
    team = Team.objects.create(name="ops")
    make_policy(match_team=team)
    demand = ingest()
    assert demand.sla_policy is None
    services.demand_assign(demand=demand, team=team, actor=staff_user)
    demand.refresh_from_db()
    assert demand.sla_policy is not None


def test_the_tick_marks_at_risk_then_breached_and_reminds_the_assignee_once_each(clock, staff_user):
    make_policy()
    demand = ingest()
    Demand.objects.filter(pk=demand.pk).update(assignee=staff_user)  # as a rule would, without acting
    assert sla_tick(now=clock.advance(minutes=10))["checked"] == 0
    sla_tick(now=clock.advance(minutes=15))  # 25 min: past 80 % of 30
    demand.refresh_from_db()
    assert demand.sla_state == SlaState.AT_RISK
    sla_tick(now=clock.advance(seconds=30))
    sla_tick(now=clock.advance(minutes=10))  # 35 min: breached
    demand.refresh_from_db()
    assert demand.sla_state == SlaState.BREACHED
    kinds = list(Notification.objects.filter(user=staff_user).values_list("kind", flat=True))
    assert kinds == [Notification.Kind.SLA, Notification.Kind.SLA]
    history = list(demand.events.filter(kind=DemandEvent.Kind.SLA).values_list("old_value", "new_value", "actor", "sla_policy"))
    assert history == [("on_track", "at_risk", None, demand.sla_policy_id), ("at_risk", "breached", None, demand.sla_policy_id)]


def test_no_reminder_is_sent_outside_business_hours_it_waits_for_the_opening(clock, staff_user):
    make_policy(**OFFICE)
    clock.now = datetime(2026, 12, 1, 17, 0, tzinfo=SHANGHAI)
    demand = ingest()
    Demand.objects.filter(pk=demand.pk).update(assignee=staff_user)
    # The monitor was down from 17:10 until 23:00: the at-risk moment (17:24) passed meanwhile.
    night = datetime(2026, 12, 1, 23, 0, tzinfo=SHANGHAI)
    sla_tick(now=night)
    demand.refresh_from_db()
    assert demand.sla_state == SlaState.ON_TRACK
    assert demand.sla_check_at == datetime(2026, 12, 2, 9, 0, tzinfo=SHANGHAI)
    assert not Notification.objects.exists()
    sla_tick(now=datetime(2026, 12, 2, 9, 0, 5, tzinfo=SHANGHAI))
    demand.refresh_from_db()
    assert demand.sla_state == SlaState.BREACHED  # due 17:30 the day before
    # One reminder, for where it stands now: not "at risk" and "breached" in one burst.
    assert list(Notification.objects.values_list("kind", flat=True)) == [Notification.Kind.SLA]
    assert "breached" in Notification.objects.get().text


def test_a_breach_at_closing_time_is_still_told_within_the_grace(clock, staff_user):
    make_policy(**OFFICE, respond_minutes=60)
    clock.now = datetime(2026, 12, 1, 17, 0, tzinfo=SHANGHAI)
    demand = ingest()
    Demand.objects.filter(pk=demand.pk).update(assignee=staff_user)
    sla_tick(now=datetime(2026, 12, 1, 18, 0, 10, tzinfo=SHANGHAI))
    demand.refresh_from_db()
    assert demand.sla_state == SlaState.BREACHED


def test_a_restarted_timer_catches_up_from_the_database(clock, staff_user):
    from demands.sla.policies import PolicyBook

    make_policy()
    demand = ingest()
    sla_tick(now=clock.advance(minutes=5))
    PolicyBook.invalidate_all()  # a new process: nothing kept but the rows
    sla_tick(now=clock.advance(hours=1))
    demand.refresh_from_db()
    assert demand.sla_state == SlaState.BREACHED
    assert demand.events.filter(kind=DemandEvent.Kind.SLA).count() == 1  # straight to breached, one entry


def test_a_changed_policy_re_times_open_demands_in_bounded_batches(clock, staff_user):
    policy = make_policy()
    demands = [ingest() for _ in range(5)]
    closed = ingest()
    services.demand_change_status(demand=closed, status=Status.RESOLVED, actor=staff_user)
    policy.respond_minutes = 60
    policy.save()
    from demands.sla.escalation import retime_batch

    assert retime_batch(now=clock(), limit=3) == 3
    assert retime_batch(now=clock(), limit=3) == 2
    assert retime_batch(now=clock(), limit=3) == 0  # done until the next change
    for demand in demands:
        demand.refresh_from_db()
        assert demand.respond_by == T0 + timedelta(minutes=60)
    closed.refresh_from_db()
    assert closed.respond_by == T0 + timedelta(minutes=30)


def test_a_disabled_policy_stops_matching_after_re_timing(clock):
    policy = make_policy()
    demand = ingest()
    SlaPolicy.objects.filter(pk=policy.pk).update(enabled=False)
    policy.refresh_from_db()
    policy.save()
    sla_tick(now=clock())
    demand.refresh_from_db()
    assert demand.sla_policy is None and demand.sla_check_at is None and demand.sla_state == ""


def test_the_monitor_tick_runs_the_timer(clock, staff_user):
    from demands.monitoring.monitor import Monitor

    make_policy()
    demand = ingest()
    result = Monitor(clock=lambda: clock.now + timedelta(hours=1), sample_lag=False, broadcast=False).tick(deliver=False)
    assert result.steps["sla"]["checked"] == 1
    demand.refresh_from_db()
    assert demand.sla_state == SlaState.BREACHED


def test_deleting_a_policy_clears_the_sla_of_its_open_demands(clock):
    policy = make_policy()
    demand = ingest()
    policy.delete()
    sla_tick(now=clock.advance(minutes=1))
    demand.refresh_from_db()
    assert (demand.sla_policy, demand.sla_state, demand.sla_due_at, demand.sla_check_at) == (None, "", None, None)
