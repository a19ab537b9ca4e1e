"""Classification and routing rules (best practice 5.1/5.3): match on type, source, content; act.

Content patterns run on RE2, whose matching time is linear in the content: a careless pattern such
as `(\\w+\\s?)+$` backtracks exponentially in Python's `re` (holding the GIL, so the embedded
dashboard stopped answering too), and one stored rule could stop all ingestion. RE2 refuses what it
cannot run in linear time (backreferences, lookarounds); such a rule, or one that fails while
matching, is skipped and the reason recorded on the rule for the admins — never a failed batch.

Rules are compiled once and reused across batches; the consume loop reloads them when they change
(a cheap version check at most every few seconds), so a rule saved in the admin applies to the
next batch without restarting consumers.
"""

from __future__ import annotations

import re
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone as dt_timezone

import re2

from ..models import Demand, Rule

RELOAD_EVERY = 5.0  # seconds between version checks in a long-running process
# RE2's memory budget per compiled pattern (its default is 8 MiB). A pattern over it is refused when
# it is compiled; while matching, RE2 falls back to a slower (still linear) engine instead of failing.
RE2_MAX_MEM = 16 << 20

# Python's `re` on str is Unicode-aware, RE2's Perl classes are ASCII-only: spell out re's meaning
# so that rules written for `re` (Chinese content included) keep matching as they did.
_RE_SPACE = r"\t\n\x0b\x0c\r\x1c-\x1f \x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}"
_OUTSIDE_CLASS = {
    "w": r"[\p{L}\p{N}_]", "W": r"[^\p{L}\p{N}_]", "d": r"\p{Nd}", "D": r"\P{Nd}",
    "s": f"[{_RE_SPACE}]", "S": f"[^{_RE_SPACE}]", "Z": r"\z",
}
_INSIDE_CLASS = {"w": r"\p{L}\p{N}_", "d": r"\p{Nd}", "s": _RE_SPACE}
_MULTILINE_FLAG = re.compile(r"\(\?[a-zA-Z]*m")


class PatternRefused(ValueError):
    """RE2 cannot run this pattern (or it is not a regular expression at all)."""


def re2_pattern(pattern: str) -> str:
    """`pattern` with `re`'s meaning in RE2's syntax: Unicode \\w \\d \\s (and negations), \\Z,
    and `$` also before a final newline (consuming it: a pattern that goes on after `$` and needs
    that newline differs). \\b stays RE2's (ASCII word characters)."""
    out, index, length = [], 0, len(pattern)
    in_class = class_start = False
    multiline = bool(_MULTILINE_FLAG.search(pattern))
    while index < length:
        char = pattern[index]
        if char == "\\" and index + 1 < length:
            escaped = pattern[index + 1]
            out.append((_INSIDE_CLASS if in_class else _OUTSIDE_CLASS).get(escaped) or char + escaped)
            index += 2
            class_start = False
            continue
        if in_class:
            if char == "]" and not class_start:
                in_class = False
            class_start = class_start and char == "^"
        elif char == "[":
            in_class = class_start = True
        elif char == "$" and not multiline:
            char = r"(?:\n?\z)"
        out.append(char)
        index += 1
    return "".join(out)


def compile_pattern(pattern: str):
    """The RE2 regexp for a rule's pattern (case-insensitive), or PatternRefused with the reason."""
    try:
        re.compile(pattern)
    except re.error as exc:
        raise PatternRefused(str(exc)) from None
    options = re2.Options()
    options.case_sensitive = False
    options.max_mem = RE2_MAX_MEM
    options.log_errors = False
    try:
        return re2.compile(re2_pattern(pattern), options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        raise PatternRefused(reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)) from None


def _csv(value: str) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


@dataclass(frozen=True)
class CompiledRule:
    id: int | None
    name: str
    types: frozenset[str]
    sources: frozenset[str]
    keywords: tuple[str, ...]
    regex: object | None  # a compiled RE2 pattern
    set_priority: str
    add_tags: tuple[str, ...]
    set_category: str
    assign_to_id: int | None
    assign_team_id: int | None
    stop_processing: bool
    match_error: str = ""  # why RE2 refused the pattern: the rule never matches
    archive_on_arrival: bool = False
    notify_channel_id: int | None = None  # post matching demands to this channel (demands/outbound)

    @classmethod
    def from_rule(cls, rule: Rule) -> "CompiledRule":
        regex, match_error = None, ""
        if rule.match_regex:
            try:
                regex = compile_pattern(rule.match_regex)
            except PatternRefused as refused:
                match_error = str(refused)
        return cls(
            id=rule.pk,
            name=rule.name,
            types=frozenset(_csv(rule.match_types)),
            sources=frozenset(_csv(rule.match_sources)),
            keywords=tuple(keyword.casefold() for keyword in _csv(rule.match_keywords)),
            regex=regex,
            set_priority=rule.set_priority,
            add_tags=tuple(_csv(rule.add_tags)),
            set_category=rule.set_category,
            # A rule never assigns to someone who cannot work on demands (left, or not staff).
            assign_to_id=rule.assign_to_id if rule.assign_to_id and rule.assign_to.is_active and rule.assign_to.is_staff else None,
            assign_team_id=rule.assign_team_id,
            stop_processing=rule.stop_processing,
            match_error=match_error,
            archive_on_arrival=rule.archive_on_arrival,
            notify_channel_id=rule.notify_channel_id,
        )

    def matches(self, *, type: str, source: str, content: str) -> bool:
        """Whether the rule applies. A rule RE2 refused, or one that fails here, does not: its
        error is recorded on the rule (see record_rule_error) and ingest goes on without it."""
        if self.match_error:
            return False
        try:
            return self._matches(type=type, source=source, content=content)
        except Exception as exc:  # noqa: BLE001  (whatever it is, one rule must not fail the batch)
            record_rule_error(self.id, f"{exc.__class__.__name__}: {exc}")
            return False

    def _matches(self, *, type: str, source: str, content: str) -> bool:
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
    """The error message for a pattern that is invalid or that RE2 cannot run, or None."""
    try:
        compile_pattern(pattern)
    except PatternRefused as refused:
        return str(refused)
    return None


# Errors met while matching happen in the parser thread, which has no database; they are written
# to the rules by the next RuleBook.rules() call (every batch makes one), each once per process.
_errors_lock = threading.Lock()
_pending_errors: dict[int, str] = {}
_recorded_errors: dict[int, str] = {}


def record_rule_error(rule_id: int | None, reason: str) -> None:
    if rule_id is None:
        return  # an unsaved rule (the admin's preview)
    with _errors_lock:
        if _recorded_errors.get(rule_id) != reason:
            _pending_errors[rule_id] = reason


def flush_rule_errors() -> None:
    """Store the errors recorded since the last call on their rules (`match_error`, `_at`)."""
    from django.utils import timezone

    with _errors_lock:
        pending = dict(_pending_errors)
        _pending_errors.clear()
        _recorded_errors.update(pending)
    now = timezone.now()
    for rule_id, reason in pending.items():
        # update(): updated_at stays, so recording an error does not make every consumer reload.
        Rule.objects.filter(pk=rule_id).update(match_error=reason[:2000], match_error_at=now)


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
        if rule.archive_on_arrival and demand.archived_at is None:  # known noise: stored and counted, not shown
            changes.append(RuleChange(rule.id, rule.name, "archived", "", "archived"))
            demand.archived_at = datetime.now(dt_timezone.utc)
        if rule.notify_channel_id:  # not a change of the demand: history skips it, persist posts it
            changes.append(RuleChange(rule.id, rule.name, "notify", "", str(rule.notify_channel_id)))
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
                with _errors_lock:
                    _recorded_errors.clear()  # a saved rule may fail again: record it again
                self._rules = []
                for rule in Rule.objects.filter(enabled=True).select_related("assign_to").order_by("order", "id"):
                    compiled = CompiledRule.from_rule(rule)
                    self._rules.append(compiled)
                    if compiled.match_error and compiled.match_error != rule.match_error:
                        record_rule_error(rule.pk, compiled.match_error)
                self._signature = signature
        flush_rule_errors()
        return self._rules
