"""The SLA timer: one step of the monitor's tick (`sla_tick`). Moves demands into at risk /
breached with a reminder, fires escalation steps, and re-times open demands after a policy changed.

Exactly once with several processes: each demand is handled in its own transaction under its row
lock, taken with SKIP LOCKED on PostgreSQL (another timer holding it has it; this one moves on) and
re-checked under the lock (`sla_check_at` still due). A step is claimed by inserting its unique
(demand, step) row in that transaction: if that insert conflicts, someone else fired it, and this
timer does nothing. State lives in the database only, so a restarted or second monitor simply
carries on: what fell due while none ran is handled at the next tick — only the latest due step
fires then, the earlier ones are recorded as skipped (no burst after an outage).

Nothing is sent outside the policy's business hours: a demand due then waits for the next opening.
What a step does goes through the services as the system (`actor=None`), each history entry
naming the policy (`notifications.acting_for_sla_policy`); a person's reply or triage action
acknowledges the demand, which ends every "no first response" step still to come.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import translation
from django.utils.functional import lazy
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from .. import history, live, notifications, services
from ..models import CLOSED_STATUSES, PRIORITY_RANK, Demand, DemandEvent, Notification, SlaState, Status, Team
from .models import EscalationFiring, EscalationStep, SlaRetime
from .policies import Policy, Step, book
from .timers import REMINDER_GRACE, SLA_FIELDS, next_check_at, done_steps, read, refresh, step_time, store

logger = logging.getLogger(__name__)
BATCH = 200  # demands looked at per tick; the rest next tick, soonest first
RETIME_BATCH = 500
_SAVED = [name for name in SLA_FIELDS if name not in ("sla_paused_at", "sla_paused_seconds")]


def sla_tick(*, now: datetime, limit: int = BATCH) -> dict[str, int]:
    """One pass: re-time a batch after a policy change, then every demand whose timer is due.
    History texts are in the deployment's language, whichever thread runs it; notifications are in
    each recipient's (notifications.save)."""
    with translation.override(settings.LANGUAGE_CODE):
        return _tick(now=now, limit=limit)


def _tick(*, now: datetime, limit: int) -> dict[str, int]:
    result = {"retimed": retime_batch(now=now), "checked": 0, "reminded": 0, "fired": 0}
    due = list(Demand.objects.filter(sla_check_at__lte=now).order_by("sla_check_at", "id").values_list("pk", flat=True)[:limit])
    for pk in due:
        try:
            outcome = _handle(pk, now)
        except Exception:  # one demand's failure (a deleted team…) must not hold up the others
            logger.exception("SLA timer failed for demand %s", pk)
            result["failed"] = result.get("failed", 0) + 1
            continue
        if outcome is not None:
            result["checked"] += 1
            result["reminded"] += outcome[0]
            result["fired"] += outcome[1]
    return result


def _lock(pk: int, now: datetime) -> Demand | None:
    return Demand.objects.select_for_update(skip_locked=True).filter(pk=pk, sla_check_at__lte=now).first()


def _handle(pk: int, now: datetime) -> tuple[int, int] | None:
    with transaction.atomic():
        demand = _lock(pk, now)
        if demand is None:
            return None  # another timer has it, or someone changed it meanwhile
        policy = book.get(demand.sla_policy_id)
        if policy is None or demand.status in CLOSED_STATUSES or demand.status == Status.WAITING:
            fields = refresh(demand, now)  # closed, paused or policy gone: nothing to time
            demand.sla_check_at = None
            demand.save(update_fields=[*fields, "sla_check_at"])
            return 0, 0
        calendar = policy.calendar
        if not (calendar.is_open(now) or calendar.is_open(now - REMINDER_GRACE)):
            demand.sla_check_at = calendar.next_open(now)  # nobody is reminded at night
            demand.save(update_fields=["sla_check_at"])
            return 0, 0
        before, reading, done = demand.sla_state, read(demand, policy, now), done_steps(demand)
        due = [step for step in policy.steps if step.id not in done and step.holds(demand)
               and step_time(demand, policy, step.after_minutes) <= now]
        claimed = _claim(demand, due, now)
        done |= {step.id for step in due}
        store(demand, policy, reading, check_at=next_check_at(demand, policy, reading, done))
        demand.save(update_fields=_SAVED)
        events, notified = [], []
        if reading.state != before and reading.state in (SlaState.AT_RISK, SlaState.BREACHED):
            with notifications.acting_for_sla_policy(policy.id, policy.name):
                events.append(history.record(demand, DemandEvent.Kind.SLA, None, before, reading.state))
            notified += notifications.save(_reminders(demand, policy, reading))
        if claimed is not None:
            events.append(_fire(demand, policy, claimed, skipped=[s for s in due if s is not claimed]))
            notified += notifications.save(_escalation_notices(demand, policy, claimed))
        if events or notified:
            event_ids, notification_ids = [e.pk for e in events], [n.pk for n in notified]
            transaction.on_commit(lambda: live.broadcast_demand_changed(pk, event_ids=event_ids, notification_ids=notification_ids))
        if claimed is not None:
            _act(demand, policy, claimed)
        return int(bool(notified) or reading.state != before), int(claimed is not None)


def _claim(demand: Demand, due: list[Step], now: datetime) -> Step | None:
    """Claim the latest due step (the others are recorded as skipped). None: nothing due, or
    another timer fired it first (its claim row exists)."""
    if not due:
        return None
    latest = due[-1]
    try:
        with transaction.atomic():
            EscalationFiring.objects.bulk_create(
                [EscalationFiring(demand_id=demand.pk, step_id=step.id, at=now,
                                  outcome=EscalationFiring.Outcome.FIRED if step is latest else EscalationFiring.Outcome.SKIPPED)
                 for step in due]
            )
    except IntegrityError:
        return None
    return latest


def describe(step: Step | EscalationStep) -> str:
    condition = EscalationStep.Condition(step.condition)
    if condition == EscalationStep.Condition.NOT_ACKNOWLEDGED:
        return _("%(minutes)s min without a first response") % {"minutes": step.after_minutes}
    return _("%(minutes)s min without being resolved") % {"minutes": step.after_minutes}


_described = lazy(describe, str)  # a notification's: in its recipient's language (notifications.save)


def _fire(demand: Demand, policy: Policy, step: Step, *, skipped: list[Step]) -> DemandEvent:
    note = ""
    if skipped:
        note = _("Skipped, since a later step was due too: %(steps)s") % {"steps": "; ".join(describe(s) for s in skipped)}
    with notifications.acting_for_sla_policy(policy.id, policy.name):
        return history.record(demand, DemandEvent.Kind.ESCALATION, None, "", describe(step), body=note)


def _people(demand: Demand) -> list[int]:
    """Whom a reminder tells: the assignee, else the team's active members."""
    if demand.assignee_id:
        return [demand.assignee_id]
    if demand.team_id:
        team = Team.objects.filter(pk=demand.team_id).first()
        return notifications.team_recipients(team, skip=set()) if team else []
    return []


def _reminders(demand: Demand, policy: Policy, reading) -> list[Notification]:
    if reading.state == SlaState.BREACHED:
        what = notifications.later(gettext_noop("demand #%(pk)s breached its SLA"), pk=demand.pk)
    else:
        what = notifications.later(gettext_noop("demand #%(pk)s is at risk of breaching its SLA"), pk=demand.pk)
    who = notifications.sla_policy_label(policy.name)
    return [notifications.build(user_id=user_id, demand=demand, who=who, what=what, kind=Notification.Kind.SLA)
            for user_id in _people(demand)]


def _escalation_notices(demand: Demand, policy: Policy, step: Step) -> list[Notification]:
    users = set()
    if step.notify_user_id:
        users.add(step.notify_user_id)
    if step.notify_team_id:
        team = Team.objects.filter(pk=step.notify_team_id).first()
        if team is not None:
            users.update(notifications.team_recipients(team, skip=set()))
    active = set(get_user_model().objects.filter(pk__in=users, is_active=True).values_list("pk", flat=True))
    what = notifications.later(gettext_noop("escalated demand #%(pk)s: %(why)s"), pk=demand.pk, why=_described(step))
    who = notifications.sla_policy_label(policy.name)
    return [notifications.build(user_id=user_id, demand=demand, who=who, what=what, kind=Notification.Kind.ESCALATION)
            for user_id in sorted(active)]


def _act(demand: Demand, policy: Policy, step: Step) -> None:
    """Raise the priority and reassign, through the services, as the system acting for the policy."""
    with notifications.acting_for_sla_policy(policy.id, policy.name):
        if step.raise_priority and PRIORITY_RANK.get(step.raise_priority, 9) < PRIORITY_RANK.get(demand.priority, 9):
            demand = services.demand_set_priority(demand=demand, priority=step.raise_priority, actor=None)
        if step.assign_user_id or step.assign_team_id:
            assignee = get_user_model().objects.filter(pk=step.assign_user_id, is_active=True, is_staff=True).first()
            team = Team.objects.filter(pk=step.assign_team_id).first() if step.assign_team_id else None
            try:
                services.demand_assign(demand=demand, assignee=assignee or demand.assignee, team=team or demand.team, actor=None)
            except services.TriageError as exc:  # the on-call person left: the step is still done
                logger.warning("escalation of demand %s could not reassign: %s", demand.pk, exc)


def retime_batch(*, now: datetime, limit: int = RETIME_BATCH) -> int:
    """After a policy changed: re-match and re-time the next `limit` open demands (by id)."""
    marker = SlaRetime.objects.filter(pk=1).first()
    if marker is None or marker.requested_at is None or marker.requested_at == marker.done_for:
        return 0
    with transaction.atomic():
        marker = SlaRetime.objects.select_for_update(skip_locked=True).filter(pk=1).first()
        if marker is None or marker.requested_at == marker.done_for:
            return 0
        demands = list(
            Demand.objects.select_for_update().filter(pk__gt=marker.after_id).exclude(status__in=CLOSED_STATUSES)
            .order_by("pk")[:limit]
        )
        fired: dict[int, set[int]] = {}
        for demand_id, step_id in EscalationFiring.objects.filter(demand_id__in=[d.pk for d in demands]).values_list("demand_id", "step_id"):
            fired.setdefault(demand_id, set()).add(step_id)
        for demand in demands:
            fields = refresh(demand, now, rematch=True, done=fired.get(demand.pk, set()))
            if fields:
                demand.save(update_fields=fields)
        if len(demands) < limit:
            SlaRetime.objects.filter(pk=1).update(done_for=marker.requested_at, after_id=0)
        else:
            SlaRetime.objects.filter(pk=1).update(after_id=demands[-1].pk)
    return len(demands)
