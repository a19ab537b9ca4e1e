"""Classification and routing rules (best practice 5.1/5.3): match on type, source, content; act.

Rules are compiled once and reused across batches; the consume loop reloads them when they change
(a cheap version check at most every few seconds), so a rule saved in the admin applies to the
next batch without restarting consumers.
"""

from __future__ import annotations

import re
import time
import weakref
from dataclasses import dataclass

from ..models import Demand, Rule

RELOAD_EVERY = 5.0  # seconds between version checks in a long-running process


def _csv(value: str) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


@dataclass(frozen=True)
class CompiledRule:
    id: int | None
    name: str
    types: frozenset[str]
    sources: frozenset[str]
    keywords: tuple[str, ...]
    regex: re.Pattern | None
    set_priority: str
    add_tags: tuple[str, ...]
    set_category: str
    assign_to_id: int | None
    assign_team_id: int | None
    stop_processing: bool

    @classmethod
    def from_rule(cls, rule: Rule) -> "CompiledRule":
        return cls(
            id=rule.pk,
            name=rule.name,
            types=frozenset(_csv(rule.match_types)),
            sources=frozenset(_csv(rule.match_sources)),
            keywords=tuple(keyword.casefold() for keyword in _csv(rule.match_keywords)),
            regex=re.compile(rule.match_regex, re.IGNORECASE) if rule.match_regex else None,
            set_priority=rule.set_priority,
            add_tags=tuple(_csv(rule.add_tags)),
            set_category=rule.set_category,
            # A rule never assigns to someone who cannot work on demands (left, or not staff).
            assign_to_id=rule.assign_to_id if rule.assign_to_id and rule.assign_to.is_active and rule.assign_to.is_staff else None,
            assign_team_id=rule.assign_team_id,
            stop_processing=rule.stop_processing,
        )

    def matches(self, *, type: str, source: str, content: str) -> bool:
        if self.types and type not in self.types:
            return False
        if self.sources and source not in self.sources:
            return False
        if self.keywords:
            folded = content.casefold()
            if not any(keyword in folded for keyword in self.keywords):
                return False
        if self.regex is not None and not self.regex.search(content):
            return False
        return True


def validate_regex(pattern: str) -> str | None:
    """The error message for an invalid pattern, or None."""
    try:
        re.compile(pattern)
    except re.error as exc:
        return str(exc)
    return None


@dataclass
class RuleChange:
    """One change a rule made to a new demand; becomes a history entry once the demand has a pk."""

    rule_id: int | None
    rule_name: str
    field: str
    old: str
    new: str


def apply_rules(demand: Demand, rules: list[CompiledRule]) -> list[RuleChange]:
    """Apply matching rules in order to an unsaved demand; return what each changed."""
    changes: list[RuleChange] = []
    for rule in rules:
        if not rule.matches(type=demand.type, source=demand.source, content=demand.content):
            continue
        if rule.set_priority and demand.priority != rule.set_priority:
            changes.append(RuleChange(rule.id, rule.name, "priority", demand.priority, rule.set_priority))
            demand.priority = rule.set_priority
        new_tags = [tag for tag in rule.add_tags if tag not in demand.tags]
        if new_tags:
            old = ", ".join(demand.tags)
            demand.tags = [*demand.tags, *new_tags]
            changes.append(RuleChange(rule.id, rule.name, "tags", old, ", ".join(demand.tags)))
        if rule.set_category and demand.category != rule.set_category:
            changes.append(RuleChange(rule.id, rule.name, "category", demand.category, rule.set_category))
            demand.category = rule.set_category
        if rule.assign_to_id and demand.assignee_id != rule.assign_to_id:
            changes.append(RuleChange(rule.id, rule.name, "assignee", str(demand.assignee_id or ""), str(rule.assign_to_id)))
            demand.assignee_id = rule.assign_to_id
        if rule.assign_team_id and demand.team_id != rule.assign_team_id:
            changes.append(RuleChange(rule.id, rule.name, "team", str(demand.team_id or ""), str(rule.assign_team_id)))
            demand.team_id = rule.assign_team_id
        if rule.stop_processing:
            break
    return changes


class RuleBook:
    """The enabled rules, compiled; reloaded when a rule changed. In this process a saved rule
    invalidates at once (signal); other processes notice within RELOAD_EVERY seconds."""

    instances: "weakref.WeakSet[RuleBook]" = weakref.WeakSet()

    def __init__(self):
        self._rules: list[CompiledRule] | None = None
        self._signature = None
        self._checked = 0.0
        RuleBook.instances.add(self)

    def invalidate(self) -> None:
        self._rules = None

    @classmethod
    def invalidate_all(cls, **_signal_kwargs) -> None:
        for book in cls.instances:
            book.invalidate()

    def _current_signature(self):
        # Not only the cache: consumers in other processes share no local cache, so the rows
        # themselves say whether anything changed (count + newest change).
        from django.db.models import Count, Max

        return tuple(Rule.objects.aggregate(n=Count("id"), last=Max("updated_at")).values())

    def rules(self) -> list[CompiledRule]:
        now = time.monotonic()
        if self._rules is None or now - self._checked >= RELOAD_EVERY:
            self._checked = now
            signature = self._current_signature()
            if self._rules is None or signature != self._signature:
                self._rules = [
                    CompiledRule.from_rule(rule)
                    for rule in Rule.objects.filter(enabled=True).select_related("assign_to").order_by("order", "id")
                ]
                self._signature = signature
        return self._rules
