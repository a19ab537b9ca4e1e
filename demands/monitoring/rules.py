"""Alert rules as staff configure them on the alert-rules page: save, enable/disable, test now,
and what a rule would have done over the last 24 hours (from the stored per-minute samples).

`alert_rule_test` runs the rule's condition once on the current data — read only, so an unsaved
rule can be tried. `alert_rule_backtest` replays the stored minutes for the conditions that have
per-minute history (lag, spike, rejection ratio, cluster) and counts how often the rule would
have opened an alert; the others (heartbeats keep only their last beat, drain estimates and
urgent demands are not kept per minute) say so instead of guessing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from .conditions import CONDITIONS, Context
from .flow import floor_minute
from .metrics import group_key
from .models import AlertRule, ClusterSample, FlowBucket, LagSample

Kind = AlertRule.Kind
BACKTEST_HOURS = 24


def alert_rule_save(*, rule: AlertRule, actor=None) -> AlertRule:
    """Validate (the model's rules) and save a new or changed rule; the next tick evaluates it."""
    rule.full_clean()
    rule.save()
    return rule


@transaction.atomic
def alert_rule_set_enabled(*, rule: AlertRule, enabled: bool, actor=None) -> AlertRule:
    """Switch a rule on or off. Its open alerts resolve at the next evaluation when it is off."""
    rule = AlertRule.objects.select_for_update().get(pk=rule.pk)
    if rule.enabled != enabled:
        rule.enabled = enabled
        rule.save(update_fields=["enabled"])
    return rule


@dataclass(slots=True)
class TestResult:
    known: bool  # False: no data to tell (e.g. no fresh lag sample)
    firing: list[tuple[str, str, float | None]] = field(default_factory=list)  # key, title, value


def alert_rule_test(*, rule: AlertRule, now: datetime | None = None) -> TestResult:
    """What the rule's condition says right now: the keys it would fire for, with their values."""
    findings = CONDITIONS[rule.kind](rule, Context(now=now or timezone.now()))
    if findings is None:
        return TestResult(known=False)
    return TestResult(known=True, firing=[(key, finding.title, finding.value) for key, finding in findings.items()])


@dataclass(slots=True)
class Backtest:
    supported: bool
    episodes: int = 0  # how many times an alert would have opened
    minutes_firing: int = 0
    minutes_known: int = 0  # minutes with data to judge
    peak: float | None = None


def alert_rule_backtest(*, rule: AlertRule, now: datetime | None = None, hours: int = BACKTEST_HOURS) -> Backtest:
    now = now or timezone.now()
    end = floor_minute(now)
    start = end - timedelta(hours=hours) + timedelta(minutes=1)
    series = _minute_values(rule, start, end)
    if series is None:
        return Backtest(supported=False)
    result = Backtest(supported=True)
    firing_before: set[str] = set()
    for minute in _minutes(start, end):
        values = series.get(minute)
        if values is None:
            continue  # no data that minute: neither opens nor resolves, as in evaluation
        result.minutes_known += 1
        firing = {key for key, value in values.items() if _breaches(rule, value)}
        result.episodes += len(firing - firing_before)
        result.minutes_firing += bool(firing)
        peak = max((value for value in values.values() if value is not None), default=None)
        if peak is not None:
            result.peak = peak if result.peak is None else max(result.peak, peak)
        firing_before = firing
    return result


def _breaches(rule: AlertRule, value: float | None) -> bool:
    if rule.kind == Kind.CLUSTER_DEGRADED:
        return value is None or value > rule.threshold  # None: unreachable
    return value is not None and value > rule.threshold


def _minutes(start: datetime, end: datetime) -> list[datetime]:
    return [start + timedelta(minutes=i) for i in range(int((end - start).total_seconds() // 60) + 1)]


def _minute_values(rule: AlertRule, start: datetime, end: datetime) -> dict[datetime, dict[str, float | None]] | None:
    """{minute: {key: value}} as the condition would have seen it each minute; None: no history kept."""
    if rule.kind == Kind.CONSUMER_LAG:
        group = rule.consumer_group or settings.KAFKA_CONSUMER_GROUP
        values: dict = {}
        rows = LagSample.objects.filter(group=group, minute__gte=start, minute__lte=end).values("minute", "topic").annotate(n=Sum("lag"))
        for row in rows.order_by():
            values.setdefault(row["minute"], {})[f"{group}/{row['topic']}"] = row["n"]
        return values
    if rule.kind == Kind.CLUSTER_DEGRADED:
        values = {}
        for sample in ClusterSample.objects.filter(minute__gte=start, minute__lte=end):
            if not sample.reachable:
                values[sample.minute] = {"cluster": None}
            else:
                values[sample.minute] = {
                    "offline": len(sample.offline or []), "under_replicated": len(sample.under_replicated or []),
                }
        return values
    if rule.kind in (Kind.ARRIVAL_SPIKE, Kind.REJECTION_RATIO):
        return _windowed_flow(rule, start, end)
    return None


def _windowed_flow(rule: AlertRule, start: datetime, end: datetime) -> dict[datetime, dict[str, float | None]]:
    """Per minute, the rule's window of flow (arrivals; or the rejected share) ending that minute."""
    window = max(rule.window_minutes, 1)
    rows = FlowBucket.objects.filter(minute__gte=start - timedelta(minutes=window - 1), minute__lte=end)
    if rule.match_type:
        rows = rows.filter(type=rule.match_type)
    if rule.match_source:
        rows = rows.filter(source=rule.match_source)
    per_minute: dict[datetime, dict[tuple[str, str], int]] = {}
    for row in rows.values("minute", "kind", "type", "source").annotate(n=Sum("count")).order_by():
        key = group_key(rule.group_by, row["type"], row["source"])
        bucket = per_minute.setdefault(row["minute"], {})
        bucket[(row["kind"], key)] = bucket.get((row["kind"], key), 0) + row["n"]
    values: dict[datetime, dict[str, float | None]] = {}
    for minute in _minutes(start, end):
        totals: dict[tuple[str, str], int] = {}
        for offset in range(window):
            for pair, n in per_minute.get(minute - timedelta(minutes=offset), {}).items():
                totals[pair] = totals.get(pair, 0) + n
        out: dict[str, float | None] = {}
        if rule.kind == Kind.ARRIVAL_SPIKE:
            out = {key: n for (kind, key), n in totals.items() if kind == FlowBucket.Kind.ARRIVAL}
        else:
            for (kind, key), bad in totals.items():
                if kind != FlowBucket.Kind.REJECTION:
                    continue
                total = bad + totals.get((FlowBucket.Kind.ARRIVAL, key), 0)
                if total >= max(rule.min_messages, 1):
                    out[key] = bad / total
        values[minute] = out  # flow is known every minute: no bucket means nothing arrived
    return values
