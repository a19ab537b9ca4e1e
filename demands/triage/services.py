"""Several fields of one demand in one step: one transaction, one version bump, one history entry
per changed field, all or nothing — a field that cannot change refuses the whole step.

"Changed meanwhile" is not a plain refusal here: when the version the user saw is stale, the
history written since (events after `seen_event`) says who changed what; the user's choices on
fields nobody else touched are applied, the others are returned as conflicts (for the page to
pre-fill) with those sentences. The per-field services in demands/services.py stay for the API,
the admin, bulk actions and rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import history, notifications
from ..models import CLOSED_STATUSES, TRANSITIONS, Demand, DemandEvent, Notification, Priority, Status
from ..outbound import follows
from ..services import MAX_COMMENT_CHARS, UNCHANGED, InvalidTransition, TriageError, _after_commit, _check_actor, _sla, _touch

FIELDS = ("status", "priority", "assignee", "team")
# Which history entries say a field was changed (a duplicate marking changes the status).
FIELD_OF_KIND = {
    DemandEvent.Kind.STATUS: "status", DemandEvent.Kind.DUPLICATE: "status", DemandEvent.Kind.PRIORITY: "priority",
    DemandEvent.Kind.ASSIGNMENT: "assignee", DemandEvent.Kind.TEAM: "team",
}


@dataclass
class TriageOutcome:
    demand: Demand
    changed: list[tuple[str, str]] = field(default_factory=list)  # (field, new value as shown), in FIELDS order
    comment: DemandEvent | None = None
    meanwhile: list[str] = field(default_factory=list)  # "Alice set priority to Urgent", oldest first
    conflicts: dict[str, object] = field(default_factory=dict)  # field → the user's choice, not applied
    saved_fields: list[str] = field(default_factory=list)


def demand_triage(
    *, demand: Demand, actor, expected_version: int | None = None, seen_event: int | None = None,
    status=UNCHANGED, priority=UNCHANGED, assignee=UNCHANGED, team=UNCHANGED, comment: str = "",
) -> TriageOutcome:
    """Apply every given field (UNCHANGED leaves one alone; None clears the assignee or team) and
    the comment, if any, in one transaction. `expected_version` None: no conflict check (the list)."""
    _check_actor(actor)
    if status is not UNCHANGED and status not in Status.values:
        raise TriageError(_("Unknown status “%(status)s”.") % {"status": status})
    if priority is not UNCHANGED and priority not in Priority.values:
        raise TriageError(_("Unknown priority “%(priority)s”.") % {"priority": priority})
    if assignee not in (UNCHANGED, None) and not (assignee.is_active and assignee.is_staff):
        raise TriageError(_("Demands can only be assigned to active staff members."))
    comment = (comment or "").strip()
    if len(comment) > MAX_COMMENT_CHARS:
        raise TriageError(_("A comment can have at most %(n)s characters.") % {"n": MAX_COMMENT_CHARS})
    wanted = {name: value for name, value in zip(FIELDS, (status, priority, assignee, team)) if value is not UNCHANGED}
    with transaction.atomic():
        current = Demand.objects.select_for_update(of=("self",)).select_related("assignee", "team").get(pk=demand.pk)
        outcome = TriageOutcome(demand=current)
        if expected_version is not None and current.version != expected_version:
            # Only other people's changes conflict: the user's own (another tab, a quick second key) do not.
            since = [e for e in _events_since(current, seen_event) if actor is None or e.actor_id != actor.pk]
            outcome.meanwhile = [describe(event) for event in since]
            touched = set(FIELDS) if seen_event is None else {FIELD_OF_KIND[e.kind] for e in since if e.kind in FIELD_OF_KIND}
            for name in list(wanted):
                if name in touched and not _same(current, name, wanted[name]):
                    outcome.conflicts[name] = wanted.pop(name)
        events = _apply(current, wanted, actor, outcome)
        notified = []
        if "assignee" in wanted or "team" in wanted:
            notified += notifications.save(notifications.for_assignment(
                demand=current, who=notifications.actor_label(actor=actor),
                assignee_id=current.assignee_id if any(f == "assignee" for f, _v in outcome.changed) else None,
                team=current.team if any(f == "team" for f, _v in outcome.changed) else None,
                actor_id=getattr(actor, "pk", None),
            ))
        if comment:
            outcome.comment = history.record(current, DemandEvent.Kind.COMMENT, actor, "", "", body=comment)
            events.append(outcome.comment)
            who = notifications.actor_label(actor=actor)
            notified += notifications.save([notifications.build(  # the assignee and the followers, as services.demand_comment
                user_id=user_id, demand=current, who=who, what=notifications.commented(current.pk),
                kind=Notification.Kind.COMMENT,
            ) for user_id in follows.comment_recipients(demand=current, actor_id=getattr(actor, "pk", None))])
            if actor is not None:
                follows.follow(user=actor, demand=current)
        if not events:
            return outcome
        now = timezone.now()
        fields = ["updated_at"]
        if outcome.changed:
            fields = [*outcome.saved_fields, *_touch(current, now, actor)]  # one version bump for all fields
        else:  # a comment alone overwrites nothing: no version bump (as services.demand_comment)
            current.updated_at = now
            if current.first_action_at is None and actor is not None:
                current.first_action_at = now
                fields.append("first_action_at")
        rematch = bool({"priority", "team", "type"} & set(fields))
        current.save(update_fields=fields + _sla(current, now, rematch=rematch))  # pause/resume, re-match, re-time
        _after_commit(current, events, notified)
    return outcome


def _same(demand: Demand, name: str, value) -> bool:
    if name in ("assignee", "team"):
        return getattr(demand, f"{name}_id") == getattr(value, "pk", None)
    return getattr(demand, name) == value


def _apply(demand: Demand, wanted: dict, actor, outcome: TriageOutcome) -> list[DemandEvent]:
    """Change the locked row in memory and write one history entry per field; raises (and so rolls
    back the whole step) on the first field that cannot change."""
    events, saved = [], []
    now = timezone.now()
    if "status" in wanted and demand.status != wanted["status"]:
        new, old = wanted["status"], demand.status
        if new not in TRANSITIONS[old]:
            raise InvalidTransition(_("A %(old)s demand cannot become %(new)s.") % {"old": Status(old).label, "new": Status(new).label})
        if new == Status.DUPLICATE:
            raise InvalidTransition(_("Mark a demand as a duplicate by naming the demand it duplicates."))
        demand.status = new
        saved.append("status")
        if new in CLOSED_STATUSES:
            demand.resolved_at = now
            saved.append("resolved_at")
        elif demand.resolved_at is not None:  # reopened
            demand.resolved_at = None
            saved.append("resolved_at")
        if old == Status.DUPLICATE:
            demand.duplicate_of = None
            saved.append("duplicate_of")
        events.append(history.record(demand, DemandEvent.Kind.STATUS, actor, old, new))
        outcome.changed.append(("status", Status(new).label))
    if "priority" in wanted and demand.priority != wanted["priority"]:
        old, demand.priority = demand.priority, wanted["priority"]
        saved.append("priority")
        events.append(history.record(demand, DemandEvent.Kind.PRIORITY, actor, old, demand.priority))
        outcome.changed.append(("priority", Priority(demand.priority).label))
    if "assignee" in wanted and not _same(demand, "assignee", wanted["assignee"]):
        old = notifications.display_name(demand.assignee)
        demand.assignee = wanted["assignee"]
        saved.append("assignee")
        events.append(history.record(demand, DemandEvent.Kind.ASSIGNMENT, actor, old, notifications.display_name(demand.assignee)))
        outcome.changed.append(("assignee", notifications.display_name(demand.assignee) or _("nobody")))
    if "team" in wanted and not _same(demand, "team", wanted["team"]):
        old = demand.team.name if demand.team else ""
        demand.team = wanted["team"]
        saved.append("team")
        events.append(history.record(demand, DemandEvent.Kind.TEAM, actor, old, demand.team.name if demand.team else ""))
        outcome.changed.append(("team", demand.team.name if demand.team else _("no team")))
    outcome.saved_fields = saved
    return events


def _events_since(demand: Demand, seen_event: int | None) -> list[DemandEvent]:
    """Changes (not comments) written after the history entry the user last saw, oldest first."""
    events = demand.events.exclude(kind=DemandEvent.Kind.COMMENT).select_related("actor", "rule").order_by("id")
    if seen_event is not None:
        return list(events.filter(pk__gt=seen_event)[:20])
    return list(events.reverse()[:3])[::-1]  # no mark of what the user saw: the latest changes


def describe(event: DemandEvent) -> str:
    """One history entry as a sentence: "Alice set priority to Urgent"."""
    who = notifications.actor_label(actor=event.actor, rule_name=event.rule.name if event.rule_id else None)
    if event.actor is None and not event.rule_id:
        who = _("The system")
    new = event.new_value
    if event.kind == DemandEvent.Kind.STATUS:
        return _("%(who)s set the status to %(value)s") % {"who": who, "value": _label(Status, new)}
    if event.kind == DemandEvent.Kind.PRIORITY:
        return _("%(who)s set the priority to %(value)s") % {"who": who, "value": _label(Priority, new)}
    if event.kind == DemandEvent.Kind.ASSIGNMENT:
        if not new:
            return _("%(who)s unassigned it") % {"who": who}
        return _("%(who)s assigned it to %(value)s") % {"who": who, "value": new}
    if event.kind == DemandEvent.Kind.TEAM:
        if not new:
            return _("%(who)s removed the team") % {"who": who}
        return _("%(who)s set the team to %(value)s") % {"who": who, "value": new}
    if event.kind == DemandEvent.Kind.DUPLICATE:
        return _("%(who)s marked it as a duplicate of %(value)s") % {"who": who, "value": new}
    return _("%(who)s changed %(what)s") % {"who": who, "what": event.get_kind_display().lower()}


def _label(choices, value: str) -> str:
    return choices(value).label if value in choices.values else value
