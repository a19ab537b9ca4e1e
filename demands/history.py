"""A demand's history: one writer for people, rules and the system, one reader for pages and the API.

Two forms, one meaning. A change made after the demand is stored (by a person, or by the system —
`actor` None) is a `DemandEvent` row (`record`). What rules changed while a demand was ingested is
kept on the demand's own row (`Demand.rule_changes`, built by `rule_change`): thousands of
demands a second cannot each afford a history row. `entries` reads both back as one list of
DemandEvents, oldest first, names resolved the same way (`notifications.display_name`).
"""

from __future__ import annotations

from django.contrib.auth import get_user_model

from .models import Demand, DemandEvent, Rule, Team
from .notifications import acting_sla_policy_id, display_name

VALUE_CHARS = 200  # old/new values are kept this long


def record(demand: Demand, kind: str, actor, old, new, *, body: str = "", rule=None) -> DemandEvent:
    """One change after ingest, by a person or (actor None) the system — an SLA policy's step
    when one is acting (`notifications.acting_for_sla_policy`)."""
    return DemandEvent.objects.create(
        demand=demand, kind=kind, actor=actor, rule=rule, old_value=str(old)[:VALUE_CHARS],
        new_value=str(new)[:VALUE_CHARS], body=body, sla_policy_id=acting_sla_policy_id() if actor is None else None,
    )


def rule_change(change) -> dict:
    """What a rule changed at ingest, in the form kept on the demand's row."""
    return {"rule_id": change.rule_id, "rule": change.rule_name, "field": change.field, "old": change.old, "new": change.new}


RULE_CHANGE_KINDS = {"priority": DemandEvent.Kind.PRIORITY, "tags": DemandEvent.Kind.TAGS, "category": DemandEvent.Kind.CATEGORY,
                     "assignee": DemandEvent.Kind.ASSIGNMENT, "team": DemandEvent.Kind.TEAM, "archived": DemandEvent.Kind.ARCHIVE}


def entries(demand: Demand) -> list[DemandEvent]:
    """Everything that happened to the demand, oldest first: what rules changed when it was
    stored (kept on its row, shown as unsaved entries without an id), then its DemandEvent rows."""
    return rule_change_events(demand) + list(demand.events.select_related("actor", "rule", "sla_policy").order_by("id"))


def rule_change_events(demand: Demand) -> list[DemandEvent]:
    changes = [c for c in demand.rule_changes or () if isinstance(c, dict) and c.get("field") in RULE_CHANGE_KINDS]
    if not changes:
        return []
    def ids(field: str) -> set[int]:
        return {int(v) for c in changes if c["field"] == field for v in (c.get("old"), c.get("new")) if str(v or "").isdigit()}

    users, teams = get_user_model().objects.in_bulk(ids("assignee")), Team.objects.in_bulk(ids("team"))
    rules = Rule.objects.in_bulk({c["rule_id"] for c in changes if isinstance(c.get("rule_id"), int)})

    def shown(field: str, value) -> str:
        value = str(value or "")
        if field == "assignee" and value.isdigit() and int(value) in users:
            return display_name(users[int(value)])
        if field == "team" and value.isdigit() and int(value) in teams:
            return teams[int(value)].name
        return value

    return [
        DemandEvent(
            demand=demand, kind=RULE_CHANGE_KINDS[c["field"]], rule=rules.get(c.get("rule_id")), actor=None,
            old_value=shown(c["field"], c.get("old"))[:VALUE_CHARS], new_value=shown(c["field"], c.get("new"))[:VALUE_CHARS],
            created_at=demand.received_at,
        )
        for c in changes
    ]
