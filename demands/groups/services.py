"""Every change of a group: triage (status, priority, assignee, team) applied to the group and,
through the demand services, to each of its open members; merge and unmerge.

A group's triage also reaches its future members at ingest (`groups.arrivals`). A merge moves the
members of the merged groups into the target and leaves each merged group as its fingerprint's
alias (`DemandGroup.merged_into`), so later arrivals land in the target too; unmerge moves back
every member of the target whose fingerprint is the merged group's (its own members, and those that
arrived through the alias). Every change is a `GroupEvent`; members' changes are their own history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timezone as dt_timezone

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, Max, Min
from django.db.models.functions import TruncHour
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import live, notifications, services
from ..access import can_triage
from ..models import CLOSED_STATUSES, Demand, DemandGroup, GroupEvent, GroupHour, Priority, Status
from ..notifications import display_name
from ..pipeline.grouping import HOURS_KEPT, fingerprint, hour_of, known_groups

UNCHANGED = services.UNCHANGED
# What a person may set a group to (New is where groups start; Duplicate is a demand's, with an original).
GROUP_STATUSES = [Status.TRIAGED, Status.IN_PROGRESS, Status.RESOLVED, Status.REJECTED]
BULK_MAX_GROUPS = 100
MERGE_MAX_GROUPS = 20


@dataclass
class GroupResult:
    groups: list[int] = field(default_factory=list)  # groups changed
    members: int = 0  # member demands changed
    failed: dict[str, str] = field(default_factory=dict)  # "#pk" (demand) or "group pk" → reason


def _check_actor(actor) -> None:
    if not can_triage(actor):
        raise PermissionDenied(_("You can look at groups but not change them."))


def _record(group: DemandGroup, kind: str, actor, old, new) -> GroupEvent:
    return GroupEvent.objects.create(group=group, kind=kind, actor=actor, old_value=str(old)[:200], new_value=str(new)[:200])


def group_triage(
    *, group: DemandGroup, actor, status: str | None = None, priority: str | None = None, assignee=UNCHANGED, team=UNCHANGED,
    result: GroupResult | None = None,
) -> GroupResult:
    """Set the group's status / priority / assignee / team (None or UNCHANGED leaves one as it is),
    then make the same change on each open member with the demand services — a member that cannot
    take it is reported in `failed`, the rest are changed. New members take the priority, assignee
    and team at ingest."""
    _check_actor(actor)
    result = result or GroupResult()
    if status is not None and status not in GROUP_STATUSES:
        raise services.TriageError(_("Unknown status “%(status)s”.") % {"status": status})
    if priority is not None and priority not in Priority.values:
        raise services.TriageError(_("Unknown priority “%(priority)s”.") % {"priority": priority})
    if assignee not in (UNCHANGED, None) and not (assignee.is_active and assignee.is_staff):
        raise services.TriageError(_("Demands can only be assigned to active staff members."))
    with transaction.atomic():
        group = DemandGroup.objects.select_for_update(of=("self",)).select_related("assignee", "team").get(pk=group.pk)
        if group.merged_into_id:
            raise services.TriageError(_("This group was merged into another: change that one."))
        changed = []
        if status is not None and group.status != status:
            changed.append(_record(group, GroupEvent.Kind.STATUS, actor, group.status, status))
            group.status = status
        if priority is not None and group.priority != priority:
            changed.append(_record(group, GroupEvent.Kind.PRIORITY, actor, group.priority, priority))
            group.priority = priority
        if assignee is not UNCHANGED and group.assignee_id != getattr(assignee, "pk", None):
            changed.append(_record(group, GroupEvent.Kind.ASSIGNMENT, actor, display_name(group.assignee), display_name(assignee)))
            group.assignee = assignee
        if team is not UNCHANGED and group.team_id != getattr(team, "pk", None):
            changed.append(_record(group, GroupEvent.Kind.TEAM, actor, group.team.name if group.team else "", team.name if team else ""))
            group.team = team
        if changed:
            group.save(update_fields=["status", "priority", "assignee", "team"])
            result.groups.append(group.pk)
    _apply_to_members(group, actor, status, priority, assignee, team, result)
    return result


def _apply_to_members(group, actor, status, priority, assignee, team, result: GroupResult) -> None:
    """Each open member through the demand services: each locks, checks, records and broadcasts.
    Who is told of an assignment is told once for the group (_notify_assigned), not per member."""
    to_person, to_team = [], []  # members whose assignee / team this changed
    for demand in Demand.objects.filter(group=group).exclude(status__in=CLOSED_STATUSES).select_related("assignee", "team").order_by("pk"):
        try:
            touched = False
            if status is not None and demand.status != status:
                demand = services.demand_change_status(demand=demand, status=status, actor=actor)
                touched = True
            if priority is not None and demand.priority != priority:
                demand = services.demand_set_priority(demand=demand, priority=priority, actor=actor)
                touched = True
            person = assignee is not UNCHANGED and demand.assignee_id != getattr(assignee, "pk", None)
            moved = team is not UNCHANGED and demand.team_id != getattr(team, "pk", None)
            if person or moved:
                demand = services.demand_assign(
                    demand=demand, assignee=demand.assignee if assignee is UNCHANGED else assignee,
                    team=demand.team if team is UNCHANGED else team, actor=actor, notify=False,
                )
                to_person += [demand] if person else []
                to_team += [demand] if moved else []
                touched = True
            result.members += touched
        except services.TriageError as exc:
            result.failed[f"#{demand.pk}"] = str(exc)
    if to_person or to_team:
        _notify_assigned(group, actor, assignee if to_person else None, team if to_team else None, to_person, to_team)


@transaction.atomic
def _notify_assigned(group, actor, assignee, team, to_person: list, to_team: list) -> None:
    """One notification per person for the group's new owner (the assignee; the team's members),
    on the newest member demand, naming the group and how many of its demands it covers."""
    who = notifications.actor_label(actor=actor)
    actor_id = getattr(actor, "pk", None)
    rows = []
    if assignee is not None:
        rows += notifications.for_group_assignment(group=group, demand=max(to_person, key=lambda d: d.pk), count=len(to_person),
                                                   who=who, assignee_id=assignee.pk, actor_id=actor_id)
    if team is not None:
        rows += notifications.for_group_assignment(group=group, demand=max(to_team, key=lambda d: d.pk), count=len(to_team),
                                                   who=who, team=team, actor_id=actor_id,
                                                   skip=[getattr(assignee, "pk", None)])
    saved = notifications.save(rows)
    if saved:
        ids = [n.pk for n in saved]
        transaction.on_commit(lambda: live.broadcast_notifications(ids))


def group_bulk_triage(*, group_ids: list[int], actor, **changes) -> GroupResult:
    """`group_triage` on each selected group; at most BULK_MAX_GROUPS."""
    _check_actor(actor)
    if len(set(group_ids)) > BULK_MAX_GROUPS:
        raise services.TriageError(_("Change at most %(max)d groups at once.") % {"max": BULK_MAX_GROUPS})
    result = GroupResult()
    for group in DemandGroup.objects.filter(pk__in=group_ids).order_by("pk"):
        try:
            group_triage(group=group, actor=actor, result=result, **changes)
        except services.TriageError as exc:
            result.failed[_("group %(pk)s") % {"pk": group.pk}] = str(exc)
    return result


@transaction.atomic
def group_merge(*, target: DemandGroup, sources: list[DemandGroup], actor) -> DemandGroup:
    """Merge `sources` into `target` (any types and sources): their members move, counts and
    first/last seen are recounted, and each source stays as the alias of its fingerprint."""
    _check_actor(actor)
    source_ids = sorted({group.pk for group in sources} - {target.pk})
    if not source_ids:
        raise services.TriageError(_("Select at least two groups to merge."))
    if len(source_ids) >= MERGE_MAX_GROUPS:
        raise services.TriageError(_("Merge at most %(max)d groups at once.") % {"max": MERGE_MAX_GROUPS})
    locked = {g.pk: g for g in DemandGroup.objects.select_for_update().filter(pk__in=[target.pk, *source_ids]).order_by("pk")}
    target = locked[target.pk]
    if target.merged_into_id or any(locked[pk].merged_into_id for pk in source_ids if pk in locked):
        raise services.TriageError(_("A merged group cannot be merged again; unmerge it first."))
    for pk in source_ids:
        source = locked[pk]
        Demand.objects.filter(group=source).update(group=target)
        DemandGroup.objects.filter(merged_into=source).update(merged_into=target)  # aliases follow: one level only
        source.merged_into = target
        source.save(update_fields=["merged_into"])
        _record(target, GroupEvent.Kind.MERGE, actor, "", f"#{source.pk} {source.title}")
        _record(source, GroupEvent.Kind.MERGE, actor, "", f"#{target.pk} {target.title}")
    recount(target)
    transaction.on_commit(known_groups.forget)
    return target


@transaction.atomic
def group_unmerge(*, group: DemandGroup, actor) -> DemandGroup:
    """Split a merged group off again: back go the members of its target whose fingerprint is its
    own — those it had, and those that arrived through it as an alias since."""
    _check_actor(actor)
    group = DemandGroup.objects.select_for_update().get(pk=group.pk)
    if group.merged_into_id is None:
        raise services.TriageError(_("This group is not merged into another."))
    target = DemandGroup.objects.select_for_update().get(pk=group.merged_into_id)
    members = Demand.objects.filter(group=target, type=group.type, source=group.source).order_by().values_list("pk", "content")
    ids = [pk for pk, content in members.iterator(chunk_size=2000)
           if fingerprint(type=group.type, source=group.source, content=content) == group.fingerprint]
    for start in range(0, len(ids), 500):
        Demand.objects.filter(pk__in=ids[start:start + 500]).update(group=group)
    group.merged_into = None
    group.save(update_fields=["merged_into"])
    _record(target, GroupEvent.Kind.UNMERGE, actor, f"#{group.pk} {group.title}", "")
    _record(group, GroupEvent.Kind.UNMERGE, actor, f"#{target.pk} {target.title}", "")
    recount(target)
    recount(group)
    transaction.on_commit(known_groups.forget)
    return group


def recount(group: DemandGroup) -> None:
    """Count, first/last seen and the recent hourly counts of a group from its members."""
    totals = Demand.objects.filter(group=group).aggregate(n=Count("pk"), first=Min("received_at"), last=Max("received_at"))
    fields = ["count"]
    group.count = totals["n"]
    if totals["n"]:
        group.first_seen, group.last_seen = totals["first"], totals["last"]
        fields += ["first_seen", "last_seen"]
    group.save(update_fields=fields)
    since = hour_of(timezone.now() - HOURS_KEPT)
    GroupHour.objects.filter(group=group, hour__gte=since).delete()
    hours = (Demand.objects.filter(group=group, received_at__gte=since).order_by()
             .annotate(at=TruncHour("received_at", tzinfo=dt_timezone.utc)).values("at").annotate(n=Count("pk")))
    GroupHour.objects.bulk_create([GroupHour(group=group, hour=row["at"], count=row["n"]) for row in hours])
