"""In-page notifications: who is told about a change, and what they read. One builder for people,
rules and the system.

`services` (a person's change) and `pipeline.persist` (a rule's change at ingest) both build their
notifications here, so the recipients of an assignment (the assignee, or the team's active members
but the assignee and the actor) and the text are the same whoever made it. Callers save the rows
(one at a time in a request, in bulk at ingest) and broadcast them after commit (`live`).
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager

from django.utils import timezone
from django.utils.translation import gettext as _

from .models import Notification, Team
from .outbound import dispatch

PREVIEW_CHARS = 120  # of the demand's content, after the sentence


def display_name(user) -> str:
    """How a person is named in history and notifications."""
    if user is None:
        return ""
    return user.get_full_name() or user.get_username()


# The SLA policy the system is acting for (its escalation steps), as (id, name): history entries
# and notifications made meanwhile by the services name it instead of "a rule".
_acting_policy: contextvars.ContextVar[tuple[int, str] | None] = contextvars.ContextVar("acting_sla_policy", default=None)


@contextmanager
def acting_for_sla_policy(policy_id: int, name: str):
    token = _acting_policy.set((policy_id, name))
    try:
        yield
    finally:
        _acting_policy.reset(token)


def acting_sla_policy_id() -> int | None:
    acting = _acting_policy.get()
    return acting[0] if acting else None


def sla_policy_label(name: str) -> str:
    return _("SLA policy “%(name)s”") % {"name": name}


def actor_label(*, actor=None, rule_name: str | None = None) -> str:
    """Who did it: a person, a named rule, an SLA policy, or the system (a rule or an alert without a name)."""
    if actor is not None:
        return display_name(actor)
    if rule_name:
        return _("Rule “%(name)s”") % {"name": rule_name}
    acting = _acting_policy.get()
    if acting:
        return sla_policy_label(acting[1])
    return _("A rule")


def build(*, user_id: int, demand, who: str, what: str, created_at=None,
          kind: str = Notification.Kind.ASSIGNED) -> Notification:
    """One unsaved notification: "<who> <what>: <the demand's first words>"."""
    return Notification(
        user_id=user_id, demand_id=demand.pk, text=f"{who} {what}: {demand.content[:PREVIEW_CHARS]}",
        created_at=created_at or timezone.now(), kind=kind,
    )


def save(rows: list[Notification]) -> list[Notification]:
    """Save notifications (one statement). Every caller — a person's change, a rule at ingest, an
    SLA timer — saves through here, so what else a notification sets off is added in one place:
    the outbox rows of the recipients' subscribed channels (outbound.dispatch), in the same
    transaction, sent by the delivery worker after commit."""
    if not rows:
        return []
    saved = Notification.objects.bulk_create(rows)
    dispatch.enqueue(saved)
    return saved


def assigned_to_you(pk: int) -> str:
    return _("assigned demand #%(pk)s to you") % {"pk": pk}


def assigned_to_team(pk: int, team_name: str) -> str:
    return _("assigned demand #%(pk)s to your team %(team)s") % {"pk": pk, "team": team_name}


def commented(pk: int) -> str:
    return _("commented on demand #%(pk)s") % {"pk": pk}


def team_recipients(team: Team, *, skip: set[int | None]) -> list[int]:
    """The team's active members that an assignment to the team tells (not the assignee, not the actor)."""
    return [pk for pk in team.members.filter(is_active=True).values_list("pk", flat=True) if pk not in skip]


def for_assignment(*, demand, who: str, assignee_id: int | None = None, team: Team | None = None,
                   actor_id: int | None = None, created_at=None) -> list[Notification]:
    """Unsaved notifications for assigning `demand` to a person and/or a team."""
    notifications = []
    if assignee_id is not None and assignee_id != actor_id:
        notifications.append(build(user_id=assignee_id, demand=demand, who=who, what=assigned_to_you(demand.pk),
                                   created_at=created_at, kind=Notification.Kind.ASSIGNED))
    if team is not None:
        what = assigned_to_team(demand.pk, team.name)
        notifications.extend(
            build(user_id=pk, demand=demand, who=who, what=what, created_at=created_at, kind=Notification.Kind.TEAM)
            for pk in team_recipients(team, skip={actor_id, assignee_id, demand.assignee_id})
        )
    return notifications
