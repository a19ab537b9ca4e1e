"""Which policy a demand falls under: the enabled policies, cached per process and matched in Python.

Ingest matches a whole batch against the cached list (no query per batch, let alone per demand);
the cache reloads when a policy changed — at once in this process (signals), within RELOAD_EVERY
seconds in the others (a count + newest-change query, as the rules do).
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass

from django.db.models import Count, Max

from .business_time import ALWAYS, BusinessCalendar, CalendarError
from .models import EscalationStep, SlaPolicy, SlaRetime

RELOAD_EVERY = 5.0


@dataclass(frozen=True)
class Step:
    id: int
    after_minutes: int
    condition: str
    notify_user_id: int | None
    notify_team_id: int | None
    raise_priority: str
    assign_user_id: int | None
    assign_team_id: int | None

    @classmethod
    def from_model(cls, step: EscalationStep) -> "Step":
        return cls(step.pk, step.after_minutes, step.condition, step.notify_user_id, step.notify_team_id,
                   step.raise_priority, step.assign_user_id, step.assign_team_id)

    def holds(self, demand) -> bool:
        """Whether the step's condition still holds: any person's action acknowledges."""
        if self.condition == EscalationStep.Condition.NOT_ACKNOWLEDGED:
            return demand.first_action_at is None
        return True  # not resolved: the timers only look at open demands


@dataclass(frozen=True)
class Policy:
    """A policy as the timers use it: matching sets and its calendar, compiled once."""

    id: int
    name: str
    priorities: frozenset[str]
    types: frozenset[str]
    sources: frozenset[str]
    team_id: int | None
    respond_seconds: float | None
    resolve_seconds: float | None
    at_risk_fraction: float
    calendar: BusinessCalendar
    steps: tuple[Step, ...] = ()  # by after_minutes

    @classmethod
    def from_model(cls, policy: SlaPolicy) -> "Policy":
        try:
            calendar = policy.calendar()
        except CalendarError:  # saved around the form's check: run around the clock rather than not at all
            calendar = ALWAYS
        return cls(
            id=policy.pk, name=policy.name, priorities=frozenset(policy.priorities), types=frozenset(policy.types),
            sources=frozenset(policy.sources), team_id=policy.match_team_id,
            respond_seconds=policy.respond_minutes * 60 if policy.respond_minutes else None,
            resolve_seconds=policy.resolve_minutes * 60 if policy.resolve_minutes else None,
            at_risk_fraction=min(max(policy.at_risk_percent or 80, 1), 100) / 100, calendar=calendar,
            steps=tuple(Step.from_model(step) for step in policy.steps.all()),
        )

    def matches(self, demand) -> bool:
        return (
            demand.priority in self.priorities
            and (not self.types or demand.type in self.types)
            and (not self.sources or demand.source in self.sources)
            and (self.team_id is None or demand.team_id == self.team_id)
        )


class PolicyBook:
    instances: "weakref.WeakSet[PolicyBook]" = weakref.WeakSet()

    def __init__(self):
        self._policies: list[Policy] | None = None
        self._by_id: dict[int, Policy] = {}
        self._signature = None
        self._checked = 0.0
        self._lock = threading.Lock()
        PolicyBook.instances.add(self)

    def invalidate(self) -> None:
        self._policies = None

    @classmethod
    def invalidate_all(cls, **_signal_kwargs) -> None:
        for book in cls.instances:
            book.invalidate()

    def policies(self) -> list[Policy]:
        with self._lock:
            now = time.monotonic()
            if self._policies is None or now - self._checked >= RELOAD_EVERY:
                self._checked = now
                signature = tuple(SlaPolicy.objects.aggregate(n=Count("id"), last=Max("updated_at")).values())
                if self._policies is None or signature != self._signature:
                    every = [Policy.from_model(p) for p in SlaPolicy.objects.prefetch_related("steps")]
                    self._by_id = {p.id: p for p in every}
                    enabled = {p.pk for p in SlaPolicy.objects.filter(enabled=True)}
                    self._policies = [p for p in every if p.id in enabled]
                    self._signature = signature
            return self._policies

    def get(self, policy_id: int | None) -> Policy | None:
        """Any policy by id, disabled ones included (a demand keeps the targets it was given)."""
        if policy_id is None:
            return None
        self.policies()
        return self._by_id.get(policy_id)

    def match(self, demand) -> Policy | None:
        return next((policy for policy in self.policies() if policy.matches(demand)), None)


book = PolicyBook()


def policy_changed(sender=None, instance=None, **_signal_kwargs) -> None:
    """A policy or one of its steps was saved or deleted: reload, and re-time open demands (the tick)."""
    from django.utils import timezone

    PolicyBook.invalidate_all()
    now = timezone.now()
    if isinstance(instance, EscalationStep):  # other processes see a change by the policy's updated_at
        SlaPolicy.objects.filter(pk=instance.policy_id).update(updated_at=now)
    retime, _ = SlaRetime.objects.get_or_create(pk=1)
    SlaRetime.objects.filter(pk=retime.pk).update(requested_at=now, after_id=0)
