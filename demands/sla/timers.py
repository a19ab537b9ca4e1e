"""A demand's SLA at a moment: its due times, its state, and when the timer must look again.

Pure computation on the demand's own columns (and its policy from the cache), shared by ingest
(`stamp`), the services (`refresh`, after every change a person or the system makes) and the
monitor's tick. The clock starts when the demand was stored (`received_at`); business time spent
waiting on the reporter (`sla_paused_seconds`) is added to every due time, so resuming extends
them by exactly the paused open time.

Moving a demand *into* "at risk" or "breached" is the tick's alone, since that is when people are
reminded: `refresh` keeps the state it had and asks the tick to look now (`sla_check_at`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ..models import CLOSED_STATUSES, SlaState, Status
from .policies import Policy, book

SLA_FIELDS = ["sla_policy", "sla_state", "respond_by", "resolve_by", "sla_due_at", "sla_check_at", "sla_paused_at",
              "sla_paused_seconds"]
# Reminders are sent during business hours only; a breach at closing time is told within this much.
REMINDER_GRACE = timedelta(minutes=15)


@dataclass(frozen=True)
class Reading:
    state: str
    respond_by: datetime | None
    resolve_by: datetime | None
    due_at: datetime | None  # the earliest target still open (in the past when overdue)
    next_at: datetime | None  # the next moment the state would change without anyone acting


def due_times(demand, policy: Policy) -> tuple[datetime | None, datetime | None]:
    paused = demand.sla_paused_seconds or 0
    start = demand.received_at
    respond = policy.calendar.add(start, policy.respond_seconds + paused) if policy.respond_seconds else None
    resolve = policy.calendar.add(start, policy.resolve_seconds + paused) if policy.resolve_seconds else None
    return respond, resolve


def step_time(demand, policy: Policy, minutes: int) -> datetime:
    return policy.calendar.add(demand.received_at, minutes * 60 + (demand.sla_paused_seconds or 0))


def read(demand, policy: Policy, now: datetime) -> Reading:
    """The demand's SLA as its columns say at `now` (its due times recomputed from the policy)."""
    respond_by, resolve_by = due_times(demand, policy)
    responded = demand.first_action_at
    late_response = bool(respond_by and responded and responded > respond_by)
    was_breached = demand.sla_state == SlaState.BREACHED
    if demand.status in CLOSED_STATUSES:
        late = late_response or bool(resolve_by and demand.resolved_at and demand.resolved_at > resolve_by)
        late = late or bool(respond_by and responded is None and demand.resolved_at and demand.resolved_at > respond_by)
        return Reading(SlaState.BREACHED if late or was_breached else SlaState.MET, respond_by, resolve_by, None, None)
    if demand.status == Status.WAITING:
        return Reading(SlaState.PAUSED, respond_by, resolve_by, None, None)
    pending = []  # (target seconds, due)
    if respond_by and responded is None:
        pending.append((policy.respond_seconds, respond_by))
    if resolve_by:
        pending.append((policy.resolve_seconds, resolve_by))
    due_at = min((due for _, due in pending), default=None)
    if was_breached or late_response or any(due <= now for _, due in pending):
        future = [due for _, due in pending if due > now]
        return Reading(SlaState.BREACHED, respond_by, resolve_by, due_at, None if was_breached else min(future, default=None))
    seconds, due = min(pending, key=lambda item: item[1]) if pending else (None, None)
    if seconds is None:
        return Reading(SlaState.MET, respond_by, resolve_by, None, None)
    risk_at = policy.calendar.add(demand.received_at, seconds * policy.at_risk_fraction + (demand.sla_paused_seconds or 0))
    if now >= risk_at:
        return Reading(SlaState.AT_RISK, respond_by, resolve_by, due_at, due)
    return Reading(SlaState.ON_TRACK, respond_by, resolve_by, due_at, risk_at)


def store(demand, policy: Policy | None, reading: Reading | None, *, check_at: datetime | None) -> None:
    """Put a reading on the demand's columns (not saved)."""
    demand.sla_policy_id = policy.id if policy else None
    demand.sla_state = reading.state if reading else ""
    demand.respond_by = reading.respond_by if reading else None
    demand.resolve_by = reading.resolve_by if reading else None
    demand.sla_due_at = reading.due_at if reading else None
    demand.sla_check_at = check_at


def stamp(demands: list, now: datetime) -> None:
    """Ingest: give each new demand (NewDemand rows) the first matching policy's due times. A
    batch's demands are all stored at `now`, so each policy's times are computed once per batch."""
    policies = book.policies()
    if not policies:
        return
    timed: dict[int, tuple] = {}
    for demand in demands:
        policy = next((p for p in policies if p.matches(demand)), None)
        if policy is None:
            continue
        values = timed.get(policy.id)
        if values is None or demand.received_at != now:
            fresh = _Fresh(received_at=demand.received_at)
            reading = read(fresh, policy, now)
            values = (policy.id, reading.state, reading.respond_by, reading.resolve_by, reading.due_at,
                      next_check_at(fresh, policy, reading, set()))
            if demand.received_at == now:
                timed[policy.id] = values
        (demand.sla_policy_id, demand.sla_state, demand.respond_by, demand.resolve_by, demand.sla_due_at,
         demand.sla_check_at) = values


SLA_COLUMNS = ("sla_policy", "sla_state", "respond_by", "resolve_by", "sla_due_at", "sla_check_at")


def restamp(demands: list, now: datetime) -> None:
    """Ingest again, for new demands whose priority or team changed after `stamp` (they took their
    group's): the policy they match now, or none."""
    for demand in demands:
        (demand.sla_policy_id, demand.sla_state, demand.respond_by, demand.resolve_by, demand.sla_due_at,
         demand.sla_check_at) = (None, "", None, None, None, None)
    stamp(demands, now)


@dataclass
class _Fresh:
    """A demand just stored, as `read` sees it (ingest's rows have no triage columns)."""

    received_at: datetime
    status: str = Status.NEW
    first_action_at: datetime | None = None
    resolved_at: datetime | None = None
    sla_paused_seconds: float = 0
    sla_state: str = ""
    pk: int | None = None


def done_steps(demand) -> set[int]:
    from .models import EscalationFiring

    if demand.pk is None:
        return set()
    return set(EscalationFiring.objects.filter(demand_id=demand.pk).values_list("step_id", flat=True))


def next_step_at(demand, policy: Policy, done: set[int] | None = None) -> datetime | None:
    """When the next escalation step still to do is due (steps whose condition no longer holds
    — someone responded — are not waited for)."""
    steps = [step for step in policy.steps if step.holds(demand)]
    if not steps or demand.status in CLOSED_STATUSES or demand.status == Status.WAITING:
        return None
    done = done_steps(demand) if done is None else done
    return min((step_time(demand, policy, step.after_minutes) for step in steps if step.id not in done), default=None)


def next_check_at(demand, policy: Policy, reading: Reading, done: set[int] | None = None) -> datetime | None:
    """When the tick must look: the next state change or the next escalation step still to come."""
    moments = [m for m in (reading.next_at, next_step_at(demand, policy, done)) if m is not None]
    return min(moments, default=None)


def refresh(demand, now: datetime, *, rematch: bool = False, done: set[int] | None = None) -> list[str]:
    """After a change by a person or the system: pause or resume the clock on the waiting status,
    re-match the policy when priority, type or team changed (`rematch`), re-time. Returns the
    fields it set, for the caller's save. Never moves the demand into at risk / breached itself."""
    fields = []
    if demand.status == Status.WAITING and demand.sla_paused_at is None:
        demand.sla_paused_at = now
        fields.append("sla_paused_at")
    elif demand.status != Status.WAITING and demand.sla_paused_at is not None:
        policy = book.get(demand.sla_policy_id)
        if policy is not None:
            demand.sla_paused_seconds = (demand.sla_paused_seconds or 0) + policy.calendar.between(demand.sla_paused_at, now)
        demand.sla_paused_at = None
        fields += ["sla_paused_at", "sla_paused_seconds"]
    policy = book.match(demand) if rematch or demand.sla_policy_id is None else book.get(demand.sla_policy_id)
    if policy is None and demand.sla_policy_id is None and not demand.sla_state:
        return fields  # never had an SLA (or its policy was deleted and it is cleared already)
    before = demand.sla_state
    if policy is None:
        store(demand, None, None, check_at=None)
    else:
        if policy.id != demand.sla_policy_id:
            demand.sla_state = ""  # a new policy's state starts from its own targets
        reading = read(demand, policy, now)
        check_at = next_check_at(demand, policy, reading, done)
        if reading.state in (SlaState.AT_RISK, SlaState.BREACHED) and reading.state != before and demand.status not in CLOSED_STATUSES:
            reading = Reading(before if before in (SlaState.AT_RISK, SlaState.BREACHED) else SlaState.ON_TRACK,
                              reading.respond_by, reading.resolve_by, reading.due_at, reading.next_at)
            check_at = now  # the tick moves it on and tells people
        store(demand, policy, reading, check_at=check_at)
    return fields + [name for name in SLA_FIELDS if name not in fields and name not in ("sla_paused_at", "sla_paused_seconds")]
