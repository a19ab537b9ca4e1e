"""Every state change of a demand. Views, the API, the admin, bulk actions and alert rules call these.

Each service locks the demand row, refuses a stale `expected_version` (two people changing the
same demand: the second is told instead of silently overwriting), writes the change and one
history entry, and broadcasts after the transaction committed.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass, field
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from . import history, live, notifications
from .access import can_triage, is_staff
from .outbound import follows
from .sla import timers as sla_timers
from .models import (
    CLOSED_STATUSES,
    TRANSITIONS,
    Demand,
    DemandEvent,
    Notification,
    Priority,
    SavedView,
    Status,
    Team,
    UserPreference,
)

User = get_user_model()
MAX_COMMENT_CHARS = 10_000
# One bulk post changes at most this many demands: each is its own transaction and broadcast, so
# an unbounded list (a crafted form, a script) would hold a worker for minutes.
BULK_MAX_IDS = 500
SAVED_VIEW_NAME_MAX_CHARS = 100


class TriageError(Exception):
    """A change that cannot be made; the message is shown to the user as is."""


class InvalidTransition(TriageError):
    pass


class ConflictError(TriageError):
    """The demand changed since the user loaded it."""


def _check_staff(user) -> None:
    # Saved views, preferences and notifications are a staff member's own: looking is enough.
    if not is_staff(user):
        raise PermissionDenied(_("Only staff members can use the dashboard."))


def _check_actor(actor) -> None:
    # actor None means the system (a rule or an alert); a person must be a triager.
    if actor is not None and not can_triage(actor):
        raise PermissionDenied(_("You can look at demands but not change them."))


_display_name = notifications.display_name


def _locked(demand: Demand, expected_version: int | None) -> Demand:
    current = Demand.objects.select_for_update().get(pk=demand.pk)
    if expected_version is not None and current.version != expected_version:
        last = current.events.exclude(kind=DemandEvent.Kind.COMMENT).select_related("actor").last()
        who = _display_name(last.actor) if last and last.actor else _("someone else")
        raise ConflictError(
            _("Demand #%(pk)s was changed meanwhile by %(who)s. Reload to see the change, then try again.")
            % {"pk": current.pk, "who": who}
        )
    return current


def _touch(demand: Demand, now, actor=None) -> list[str]:
    demand.version += 1
    demand.updated_at = now
    fields = ["version", "updated_at"]
    if demand.first_action_at is None and actor is not None:  # a person's first action, not a rule's or an alert's
        demand.first_action_at = now
        fields.append("first_action_at")
    return fields


def _after_commit(demand: Demand, events: list[DemandEvent], notified: list[Notification] = ()) -> None:
    pk, event_ids, notification_ids = demand.pk, [e.pk for e in events], [n.pk for n in notified]
    transaction.on_commit(lambda: live.broadcast_demand_changed(pk, event_ids=event_ids, notification_ids=notification_ids))


_record = history.record
_sla = sla_timers.refresh  # after every change: the demand's SLA (paused, re-matched, re-timed)


@transaction.atomic
def demand_change_status(*, demand: Demand, status: str, actor, expected_version: int | None = None) -> Demand:
    _check_actor(actor)
    if status not in Status.values:
        raise TriageError(_("Unknown status “%(status)s”.") % {"status": status})
    demand = _locked(demand, expected_version)
    if demand.status == status:
        return demand
    if status not in TRANSITIONS[demand.status]:
        raise InvalidTransition(
            _("A %(old)s demand cannot become %(new)s.")
            % {"old": Status(demand.status).label, "new": Status(status).label}
        )
    if status == Status.DUPLICATE and demand.duplicate_of_id is None:
        raise InvalidTransition(_("Mark a demand as a duplicate by naming the demand it duplicates."))
    now = timezone.now()
    old = demand.status
    demand.status = status
    fields = ["status", *_touch(demand, now, actor)]
    if status in CLOSED_STATUSES:
        demand.resolved_at = now
        fields.append("resolved_at")
    elif demand.resolved_at is not None:  # reopened
        demand.resolved_at = None
        fields.append("resolved_at")
    if old == Status.DUPLICATE and status != Status.DUPLICATE:
        demand.duplicate_of = None
        fields.append("duplicate_of")
    fields += _sla(demand, now)
    demand.save(update_fields=fields)
    event = _record(demand, DemandEvent.Kind.STATUS, actor, old, status)
    _after_commit(demand, [event])
    return demand


@transaction.atomic
def demand_set_priority(*, demand: Demand, priority: str, actor, expected_version: int | None = None) -> Demand:
    _check_actor(actor)
    if priority not in Priority.values:
        raise TriageError(_("Unknown priority “%(priority)s”.") % {"priority": priority})
    demand = _locked(demand, expected_version)
    if demand.priority == priority:
        return demand
    old = demand.priority
    demand.priority = priority
    now = timezone.now()
    fields = ["priority", *_touch(demand, now, actor)]
    demand.save(update_fields=fields + _sla(demand, now, rematch=True))
    event = _record(demand, DemandEvent.Kind.PRIORITY, actor, old, priority)
    _after_commit(demand, [event])
    return demand


@transaction.atomic
def demand_assign(
    *, demand: Demand, assignee=None, team: Team | None = None, actor, expected_version: int | None = None,
    notify: bool = True,
) -> Demand:
    """Set who owns the demand: a person, a team, both, or nobody (both None). `notify=False`: the
    caller tells the people itself (group triage: one notification for the group, not one a member)."""
    _check_actor(actor)
    if assignee is not None and not (assignee.is_active and assignee.is_staff):
        raise TriageError(_("Demands can only be assigned to active staff members."))
    demand = _locked(demand, expected_version)
    events = []
    now = timezone.now()
    fields: list[str] = []
    if demand.assignee_id != (assignee.pk if assignee else None):
        old = _display_name(demand.assignee)
        demand.assignee = assignee
        fields.append("assignee")
        events.append(_record(demand, DemandEvent.Kind.ASSIGNMENT, actor, old, _display_name(assignee)))
        tell_assignee = assignee
    else:
        tell_assignee = None
    tell_team = None
    if demand.team_id != (team.pk if team else None):
        old = demand.team.name if demand.team else ""
        demand.team = team
        fields.append("team")
        events.append(_record(demand, DemandEvent.Kind.TEAM, actor, old, team.name if team else ""))
        tell_team = team
    if not fields:
        return demand
    fields += _touch(demand, now, actor)
    demand.save(update_fields=fields + _sla(demand, now, rematch="team" in fields))
    # After the row is saved: outbound routing reads the demand's new team.
    notified = notifications.save(notifications.for_assignment(
        demand=demand, who=notifications.actor_label(actor=actor), assignee_id=getattr(tell_assignee, "pk", None),
        team=tell_team, actor_id=getattr(actor, "pk", None),
    )) if notify else []
    _after_commit(demand, events, notified)
    return demand


@transaction.atomic
def demand_comment(*, demand: Demand, body: str, actor) -> DemandEvent:
    _check_actor(actor)
    body = (body or "").strip()
    if not body:
        raise TriageError(_("A comment cannot be empty."))
    if len(body) > MAX_COMMENT_CHARS:
        raise TriageError(_("A comment can have at most %(n)s characters.") % {"n": MAX_COMMENT_CHARS})
    demand = Demand.objects.select_for_update().get(pk=demand.pk)
    event = _record(demand, DemandEvent.Kind.COMMENT, actor, "", "", body=body)
    who = notifications.actor_label(actor=actor)
    notified = notifications.save([notifications.build(  # the assignee and the followers (outbound.follows)
        user_id=user_id, demand=demand, who=who, what=notifications.commented(demand.pk), kind=Notification.Kind.COMMENT,
    ) for user_id in follows.comment_recipients(demand=demand, actor_id=getattr(actor, "pk", None))])
    if actor is not None:
        follows.follow(user=actor, demand=demand)
    fields = ["updated_at"]
    demand.updated_at = timezone.now()
    if demand.first_action_at is None and actor is not None:  # a person's reply is the first response
        demand.first_action_at = demand.updated_at
        fields.append("first_action_at")
        fields += _sla(demand, demand.updated_at)
    demand.save(update_fields=fields)  # a comment does not bump the version: it overwrites nothing
    _after_commit(demand, [event], notified)
    return event


@transaction.atomic
def demand_mark_duplicate(*, demand: Demand, original: Demand, actor, expected_version: int | None = None) -> Demand:
    _check_actor(actor)
    if original.pk == demand.pk:
        raise TriageError(_("A demand cannot duplicate itself."))
    if _duplicates_chain_reaches(original, demand.pk):
        raise TriageError(_("Demand #%(pk)s is already a duplicate of this one.") % {"pk": original.pk})
    demand = _locked(demand, expected_version)
    if demand.is_closed and demand.status != Status.DUPLICATE:
        raise InvalidTransition(_("Reopen the demand before marking it as a duplicate."))
    old_status, old_original = demand.status, demand.duplicate_of_id
    demand.duplicate_of = original
    demand.status = Status.DUPLICATE
    now = timezone.now()
    demand.resolved_at = now
    fields = ["duplicate_of", "status", "resolved_at", *_touch(demand, now, actor)]
    demand.save(update_fields=fields + _sla(demand, now))
    events = [_record(demand, DemandEvent.Kind.DUPLICATE, actor, f"#{old_original}" if old_original else "", f"#{original.pk}")]
    if old_status != Status.DUPLICATE:
        events.append(_record(demand, DemandEvent.Kind.STATUS, actor, old_status, Status.DUPLICATE))
    _after_commit(demand, events)
    return demand


def _duplicates_chain_reaches(original: Demand, pk: int, limit: int = 100) -> bool:
    """Whether following original → its original → … reaches `pk` (which would make a cycle)."""
    seen, current = set(), original.duplicate_of_id
    while current is not None and current not in seen and len(seen) < limit:
        if current == pk:
            return True
        seen.add(current)
        current = Demand.objects.filter(pk=current).values_list("duplicate_of_id", flat=True).first()
    return False


UNCHANGED = object()  # bulk assignment: leave this field as each demand has it


@dataclass
class BulkResult:
    changed: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)


def demand_bulk_update(
    *,
    demand_ids: list[int],
    actor,
    status: str | None = None,
    priority: str | None = None,
    assign: bool = False,
    assignee=None,
    team=UNCHANGED,
) -> BulkResult:
    """Apply one change to many demands, each in its own transaction through the single services
    above; a demand that cannot take the change (invalid transition…) is reported, not fatal.
    More than BULK_MAX_IDS distinct ids is refused whole (TriageError) before anything changes."""
    _check_actor(actor)
    if len(set(demand_ids)) > BULK_MAX_IDS:
        raise TriageError(
            _("Change at most %(max)d demands at once (%(n)d were selected).") % {"max": BULK_MAX_IDS, "n": len(set(demand_ids))}
        )
    result = BulkResult()
    found = Demand.objects.filter(pk__in=demand_ids).order_by("pk")
    for pk in sorted(set(demand_ids) - set(found.values_list("pk", flat=True))):
        result.failed[pk] = _("No such demand.")
    for demand in found:
        try:
            if status:
                demand = demand_change_status(demand=demand, status=status, actor=actor)
            if priority:
                demand = demand_set_priority(demand=demand, priority=priority, actor=actor)
            if assign:
                demand = demand_assign(
                    demand=demand, assignee=assignee, team=demand.team if team is UNCHANGED else team, actor=actor
                )
            result.changed.append(demand.pk)
        except TriageError as exc:
            result.failed[demand.pk] = str(exc)
    return result


def notification_mark_read(*, user, notification_ids: list[int] | None = None) -> int:
    _check_staff(user)
    unread = Notification.objects.filter(user=user, read_at__isnull=True)
    if notification_ids is not None:
        unread = unread.filter(pk__in=notification_ids)
    return unread.update(read_at=timezone.now())


@transaction.atomic
def demand_update(
    *, demand: Demand, actor, assignee=UNCHANGED, team=UNCHANGED, priority: str | None = None, status: str | None = None,
    expected_version: int | None = None,
) -> Demand:
    """Several fields at once (the API's PATCH): all or nothing. Each step runs the single service
    and passes on the version the previous step set, so `expected_version` guards the whole change."""
    _check_actor(actor)
    version = expected_version
    if assignee is not UNCHANGED or team is not UNCHANGED:
        demand = demand_assign(
            demand=demand, assignee=demand.assignee if assignee is UNCHANGED else assignee,
            team=demand.team if team is UNCHANGED else team, actor=actor, expected_version=version,
        )
        version = demand.version if version is not None else None
    if priority is not None:
        demand = demand_set_priority(demand=demand, priority=priority, actor=actor, expected_version=version)
        version = demand.version if version is not None else None
    if status is not None:
        demand = demand_change_status(demand=demand, status=status, actor=actor, expected_version=version)
    return demand


def saved_view_create(*, user, name: str, filter_params: dict[str, str]) -> SavedView:
    """Save the list's filters under a name; the same name again replaces that view's filters."""
    _check_staff(user)
    name = (name or "").strip()[:SAVED_VIEW_NAME_MAX_CHARS]
    if not name:
        raise TriageError(_("Give the view a name."))
    if not filter_params:
        raise TriageError(_("Choose some filters first: a view without filters is just the list."))
    view, _created = SavedView.objects.update_or_create(user=user, name=name, defaults={"query": urlencode(filter_params)})
    return view


def saved_view_delete(*, user, saved_view_id: int) -> bool:
    """Delete one of the user's own views; someone else's id deletes nothing."""
    _check_staff(user)
    deleted, _rows = SavedView.objects.filter(user=user, pk=saved_view_id).delete()
    return bool(deleted)


def preference_update(*, user, language: str | None = None, time_zone: str | None = None) -> UserPreference:
    """Language and time zone for every device of this user; None leaves a field as it is.

    The row is created on the first attempt, even a refused one, so a refusal leaves the defaults."""
    _check_staff(user)
    preference, _created = UserPreference.objects.get_or_create(user=user)
    language = preference.language if language is None else language
    time_zone = preference.time_zone if time_zone is None else time_zone
    if language and language not in dict(settings.LANGUAGES):
        raise TriageError(_("Unknown language."))
    if time_zone and time_zone not in zoneinfo.available_timezones():
        raise TriageError(_("Unknown time zone."))
    preference.language, preference.time_zone = language, time_zone
    preference.save(update_fields=["language", "time_zone"])
    return preference
