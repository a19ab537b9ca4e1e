"""New members of groups, at ingest: counted, and given their group's triage (Sentry's issue stream).

Called by `pipeline.persist` after the batch's demands are inserted, inside its transaction:

- one UPDATE counts the members per group, reopens resolved groups (a regression: the new demand
  stays New) and returns every touched group's triage (`grouping.count_group_members`);
- members of a merged group's fingerprint (an arrival the per-process cache still sent to the old
  group) move to the group it was merged into — the merge sticks in every consumer process;
- members of groups with a priority, assignee or team take it, recorded like a rule's change
  (`Demand.rule_changes`), in one UPDATE for the batch — only when some group has triage; one
  whose priority or team changed so is timed again by the SLA policy that matches it now;
- one upsert adds them to the hourly counts (`grouping.count_group_hours`).

The common case (untriaged, unmerged groups) costs the hourly upsert and nothing more.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from django.db import transaction

from ..models import Demand, GroupEvent
from ..pipeline.grouping import count_group_hours, count_group_members, known_groups
from ..sla.timers import SLA_COLUMNS, restamp as restamp_sla


def settle_arrivals(created: list, fingerprints: dict[int, str], now: datetime) -> None:
    states = count_group_members(created, now)
    moved = _follow_merges(created, fingerprints, states, now)
    changed = {id(demand): demand for demand in moved}
    retime = []
    for demand in created:
        state = states.get(demand.group_id)
        if state is not None:
            timed_by = (demand.priority, demand.team_id)
            if _inherit(demand, state):
                changed[id(demand)] = demand
                if (demand.priority, demand.team_id) != timed_by:
                    retime.append(demand)
    if retime:  # the SLA was stamped by the demand's own priority and team: time it by the group's
        restamp_sla(retime, now)
    if changed:
        Demand.objects.bulk_update(
            [Demand(pk=d.pk, group_id=d.group_id, priority=d.priority, assignee_id=d.assignee_id, team_id=d.team_id,
                    rule_changes=d.rule_changes, sla_policy_id=d.sla_policy_id, sla_state=d.sla_state,
                    respond_by=d.respond_by, resolve_by=d.resolve_by, sla_due_at=d.sla_due_at, sla_check_at=d.sla_check_at)
             for d in changed.values()],
            ["group", "priority", "assignee", "team", "rule_changes", *SLA_COLUMNS],
        )
    regressed = [state.id for state in states.values() if state.regressed]
    if regressed:
        GroupEvent.objects.bulk_create(
            [GroupEvent(group_id=pk, kind=GroupEvent.Kind.REGRESSION, old_value="resolved", new_value="triaged", created_at=now)
             for pk in regressed]
        )
    count_group_hours(created, now)


def _follow_merges(created: list, fingerprints: dict[int, str], states: dict, now: datetime) -> list:
    """Move arrivals counted into a merged group to the group it was merged into."""
    targets = {state.id: state.merged_into_id for state in states.values() if state.merged_into_id}
    if not targets:
        return []
    moved = [demand for demand in created if demand.group_id in targets]
    per_group: dict[int, int] = defaultdict(int)
    learned = {}
    for demand in moved:
        per_group[demand.group_id] -= 1  # the alias keeps the count it had when it was merged
        demand.group_id = targets[demand.group_id]
        per_group[demand.group_id] += 1
        learned[fingerprints[id(demand)]] = demand.group_id
    states.update(count_group_members([], now, per_group=dict(per_group)))
    transaction.on_commit(lambda: known_groups.learn(learned))  # the next batches go straight there
    return moved


def _inherit(demand, state) -> bool:
    changes = []
    if state.priority and demand.priority != state.priority:
        changes.append(("priority", demand.priority, state.priority))
        demand.priority = state.priority
    if state.assignee_id and demand.assignee_id != state.assignee_id:
        changes.append(("assignee", demand.assignee_id, state.assignee_id))
        demand.assignee_id = state.assignee_id
    if state.team_id and demand.team_id != state.team_id:
        changes.append(("team", demand.team_id, state.team_id))
        demand.team_id = state.team_id
    # Kept with what rules changed: the first entries of the demand's history, by the system.
    demand.rule_changes = [
        *demand.rule_changes,
        *({"rule_id": None, "rule": f"group #{state.id}", "field": field, "old": "" if old is None else str(old), "new": str(new)}
          for field, old, new in changes),
    ]
    return bool(changes)
