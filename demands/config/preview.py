"""What a rule would do, before it is saved: evaluated with ingest's own engine (pipeline.rules,
RE2) over the last N demands (at most PREVIEW_MAX), or on one chosen demand. Nothing is written.

"Would set 100 of the last 10,000 to Urgent and notify 2 members of Payments": the effect is what
`apply_rules` changes on a copy of each demand, so a demand that is urgent already is matched but
not counted as changed — exactly what ingest would have recorded.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model

from ..models import Demand, Priority, Rule, Team
from ..notifications import display_name
from ..pipeline import rules as engine

PREVIEW_DEFAULT = 10_000
PREVIEW_MAX = 10_000
PREVIEW_FIELDS = ("id", "type", "source", "content", "priority", "tags", "category", "assignee_id", "team_id", "archived_at")


@dataclass
class Effect:
    field: str
    value: str  # the new value as shown (a person's or team's name)
    count: int
    notifies: int = 0  # people told (an assignment, or a team's active members)


@dataclass
class Preview:
    sample: int = 0
    matched: int = 0
    changed: int = 0
    effects: list[Effect] = field(default_factory=list)
    examples: list[Demand] = field(default_factory=list)
    error: str = ""


def compile_unsaved(rule: Rule) -> engine.CompiledRule:
    # id None: an error met here (the pattern may be unsaved) is not recorded on the stored rule.
    return dataclasses.replace(engine.CompiledRule.from_rule(rule), id=None)


def _copy(demand: Demand) -> Demand:
    return Demand(**{name: getattr(demand, name) for name in PREVIEW_FIELDS if name != "id"}, pk=demand.pk)


def changes_on(rule: Rule, demand: Demand, compiled: engine.CompiledRule | None = None) -> list[engine.RuleChange]:
    """What the rule would change on this demand if it arrived now (the demand is not touched)."""
    copy = _copy(demand)
    copy.tags = list(copy.tags or [])
    copy.archived_at = None  # as on arrival
    return engine.apply_rules(copy, [compiled or compile_unsaved(rule)])


def shown_value(change: engine.RuleChange, users: dict, teams: dict) -> str:
    if change.field == "assignee" and change.new.isdigit() and int(change.new) in users:
        return display_name(users[int(change.new)])
    if change.field == "team" and change.new.isdigit() and int(change.new) in teams:
        return teams[int(change.new)].name
    if change.field == "priority" and change.new in Priority.values:
        return str(Priority(change.new).label)
    return change.new


def preview_rule(rule: Rule, *, sample: int = PREVIEW_DEFAULT, examples: int = 5) -> Preview:
    """The rule's effect over the latest `sample` demands (bounded by PREVIEW_MAX)."""
    sample = max(1, min(int(sample), PREVIEW_MAX))
    compiled = compile_unsaved(rule)
    preview = Preview(error=compiled.match_error)
    counts: Counter = Counter()
    latest = Demand.objects.order_by("-id").only(*PREVIEW_FIELDS)[:sample]
    for demand in latest.iterator(chunk_size=2000):
        preview.sample += 1
        if not compiled.matches(type=demand.type, source=demand.source, content=demand.content):
            continue
        preview.matched += 1
        if len(preview.examples) < examples:
            preview.examples.append(demand)
        changes = changes_on(rule, demand, compiled)
        if changes:
            preview.changed += 1
        for change in changes:
            counts[(change.field, change.new if change.field not in ("tags",) else ", ".join(compiled.add_tags))] += 1
    users = get_user_model().objects.in_bulk([int(v) for f, v in counts if f == "assignee" and v.isdigit()])
    teams = Team.objects.in_bulk([int(v) for f, v in counts if f == "team" and v.isdigit()])
    for (name, value), count in sorted(counts.items()):
        change = engine.RuleChange(None, "", name, "", value)
        effect = Effect(field=name, value=shown_value(change, users, teams), count=count)
        if name == "assignee":
            effect.notifies = 1
        elif name == "team" and value.isdigit() and int(value) in teams:
            effect.notifies = teams[int(value)].members.filter(is_active=True, is_staff=True).count()
        preview.effects.append(effect)
    return preview


def rule_try_on(rule: Rule, demand: Demand) -> dict:
    """Whether the rule matches this demand and what it would change (old → new, names shown)."""
    compiled = compile_unsaved(rule)
    matched = compiled.matches(type=demand.type, source=demand.source, content=demand.content)
    changes = changes_on(rule, demand, compiled) if matched else []
    users = get_user_model().objects.in_bulk(
        [int(v) for c in changes if c.field == "assignee" for v in (c.old, c.new) if v.isdigit()])
    teams = Team.objects.in_bulk([int(v) for c in changes if c.field == "team" for v in (c.old, c.new) if v.isdigit()])

    def old_shown(change):
        return shown_value(dataclasses.replace(change, new=change.old), users, teams)

    return {
        "demand": demand, "matched": matched, "error": compiled.match_error,
        "changes": [{"field": c.field, "old": old_shown(c), "new": shown_value(c, users, teams)} for c in changes],
    }
