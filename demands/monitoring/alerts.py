"""Alert rules: evaluate each condition, keep one open alert per (rule, key), notify, resolve.

`evaluate_rules` is called by the monitor every tick. For each enabled rule the condition returns
the keys for which it holds now (or None when it cannot tell — e.g. no fresh lag sample — and
then nothing changes). In one transaction per rule (the rule row locked, so two monitors never
race): new keys open an alert, known keys refresh theirs, keys that cleared resolve theirs.
Notifications go out when an alert opens and again every `renotify_minutes` while it stays open,
unless a silence matches or someone acknowledged it; a resolved alert that was notified says so.
A rule that acts on demands does it once, when the alert opens, through the triage services.
"""

from __future__ import annotations

import glob
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from demands.models import Demand, Priority

from . import conf
from .cluster import cluster_overview
from .flow import OPEN_STATUSES
from .heartbeat import consumer_states
from .lag import LagOverview, lag_overview
from .metrics import KEY_SEPARATOR, flow_totals, window_start
from .models import Alert, AlertDelivery, AlertRule, FlowBucket, Silence
from .notify import enqueue_notifications

logger = logging.getLogger(__name__)
Kind = AlertRule.Kind


@dataclass(slots=True)
class Finding:
    title: str
    value: float | None = None
    detail: str = ""
    demand_id: int | None = None


@dataclass(slots=True)
class Context:
    now: datetime
    _lag: dict = field(default_factory=dict)

    def lag(self, group: str) -> LagOverview | None:
        if group not in self._lag:
            self._lag[group] = lag_overview(group=group, now=self.now)
        return self._lag[group]


# -- conditions: rule, context → {key: Finding} while it holds, or None when it cannot tell -------------

def _group(rule: AlertRule) -> str:
    return rule.consumer_group or settings.KAFKA_CONSUMER_GROUP


def _worst_partitions(overview: LagOverview, topic: str) -> str:
    worst = sorted((s for s in overview.partitions if s.topic == topic), key=lambda s: -s.lag)[:5]
    return ", ".join(f"[{s.partition}] {s.lag:,}" for s in worst if s.lag)


def consumer_lag(rule: AlertRule, ctx: Context) -> dict[str, Finding] | None:
    overview = ctx.lag(_group(rule))
    if overview is None:
        return None
    return {
        f"{overview.group}/{topic}": Finding(
            title=f"Consumer lag {lag:,} on {topic} (group {overview.group})",
            value=lag,
            detail=f"Threshold {rule.threshold:,.0f} messages. Partitions: {_worst_partitions(overview, topic)}",
        )
        for topic, lag in overview.by_topic().items()
        if lag > rule.threshold
    }


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"


def time_to_drain(rule: AlertRule, ctx: Context) -> dict[str, Finding] | None:
    overview = ctx.lag(_group(rule))
    if overview is None or overview.drain.state == "unknown":
        return None
    drain = overview.drain
    rates = f"consuming {drain.consume_rate or 0:.1f}/s, producing {drain.produce_rate or 0:.1f}/s"
    if drain.never:
        what = "is not shrinking" if drain.state == "growing" else "is not being consumed"
        return {overview.group: Finding(
            title=f"Lag of {overview.total:,} {what} (group {overview.group})", value=None,
            detail=f"Will not drain at the current rates ({rates}).",
        )}
    if drain.seconds is not None and drain.seconds > rule.threshold:
        return {overview.group: Finding(
            title=f"Lag of {overview.total:,} drains in ~{_duration(drain.seconds)} (group {overview.group})",
            value=drain.seconds,
            detail=f"Threshold {_duration(rule.threshold)}; {rates}.",
        )}
    return {}


def heartbeat_missing(rule: AlertRule, ctx: Context) -> dict[str, Finding]:
    """The group has no consumer with a heartbeat in the last N seconds, or a consumer died
    (stopped writing without signing off) and nothing on its host has replaced it."""
    group = _group(rule)
    consumers = [hb for hb, _state in consumer_states(now=ctx.now) if hb.group == group]
    fresh = [hb for hb in consumers if hb.stopped_at is None and (ctx.now - hb.last_seen_at).total_seconds() <= rule.threshold]
    findings = {}
    if not fresh:
        last = max((hb.last_seen_at for hb in consumers), default=None)
        findings[f"group:{group}"] = Finding(
            title=f"No consumer of group {group} has a heartbeat in the last {_duration(rule.threshold)}",
            value=(ctx.now - last).total_seconds() if last else None,
            detail=f"Last heartbeat {last:%Y-%m-%d %H:%M:%S %Z}." if last else "No consumer of this group was ever seen.",
        )
    for hb in consumers:
        silent_for = (ctx.now - hb.last_seen_at).total_seconds()
        if hb.stopped_at is not None or silent_for <= rule.threshold:
            continue
        replaced = any(other.hostname == hb.hostname and other.started_at > hb.last_seen_at for other in fresh)
        if not replaced:
            findings[f"consumer:{hb.name}"] = Finding(
                title=f"Consumer {hb.name} stopped sending heartbeats {_duration(silent_for)} ago",
                value=silent_for,
                detail=f"Host {hb.hostname}, pid {hb.pid}, partitions {', '.join(hb.assignment) or 'none'}. "
                       "It never signed off: killed, crashed or its host is gone.",
            )
    return findings


def urgent_unassigned(rule: AlertRule, ctx: Context) -> dict[str, Finding]:
    cutoff = ctx.now - timedelta(minutes=rule.window_minutes)
    demands = Demand.objects.filter(
        priority=Priority.URGENT, status__in=OPEN_STATUSES, assignee__isnull=True, team__isnull=True, received_at__lte=cutoff
    )
    if rule.match_type:
        demands = demands.filter(type=rule.match_type)
    if rule.match_source:
        demands = demands.filter(source=rule.match_source)
    limit = conf.get("MONITORING_MAX_ALERTS_PER_RULE")
    return {
        f"demand:{demand.pk}": Finding(
            title=f"Urgent demand #{demand.pk} unassigned for {_duration((ctx.now - demand.received_at).total_seconds())}",
            value=(ctx.now - demand.received_at).total_seconds(),
            detail=f"{demand.type} from {demand.source}: {demand.content[:200]}",
            demand_id=demand.pk,
        )
        for demand in demands.order_by("id")[:limit]
    }


def arrival_spike(rule: AlertRule, ctx: Context) -> dict[str, Finding]:
    totals = flow_totals(
        kind=FlowBucket.Kind.ARRIVAL, start=window_start(ctx.now, rule.window_minutes), group_by=rule.group_by,
        match_type=rule.match_type, match_source=rule.match_source,
    )
    return {
        key: Finding(
            title=f"Spike: {count:,} arrivals of {key} in {rule.window_minutes} min",
            value=count,
            detail=f"Threshold {rule.threshold:,.0f} per {rule.window_minutes} min.",
        )
        for key, count in totals.items()
        if count > rule.threshold
    }


def rejection_ratio(rule: AlertRule, ctx: Context) -> dict[str, Finding]:
    start = window_start(ctx.now, rule.window_minutes)
    options = dict(start=start, group_by=rule.group_by, match_type=rule.match_type, match_source=rule.match_source)
    rejected = flow_totals(kind=FlowBucket.Kind.REJECTION, **options)
    accepted = flow_totals(kind=FlowBucket.Kind.ARRIVAL, **options)
    findings = {}
    for key, bad in rejected.items():
        total = bad + accepted.get(key, 0)
        if total < max(rule.min_messages, 1):
            continue
        ratio = bad / total
        if ratio > rule.threshold:
            findings[key] = Finding(
                title=f"{ratio:.0%} of messages rejected ({bad:,} of {total:,}) for {key} in {rule.window_minutes} min",
                value=ratio,
                detail=f"Threshold {rule.threshold:.0%}. See the Rejected page for reasons.",
            )
    return findings


def cluster_degraded(rule: AlertRule, ctx: Context) -> dict[str, Finding] | None:
    """Alert condition: the cluster unreachable, or more than `threshold` partitions offline or
    under-replicated (threshold 0: any). None when no fresh sample says either way."""
    overview = cluster_overview(now=ctx.now)
    if overview is None:
        return None
    if not overview.reachable:
        return {"cluster": Finding(title="Kafka cluster unreachable", value=None, detail=overview.error[:500])}
    findings = {}
    if len(overview.offline) > rule.threshold:
        findings["offline"] = Finding(
            title=f"{len(overview.offline)} Kafka partitions offline (no leader)", value=len(overview.offline),
            detail="Partitions: " + ", ".join(overview.offline[:20]),
        )
    if len(overview.under_replicated) > rule.threshold:
        findings["under_replicated"] = Finding(
            title=f"{len(overview.under_replicated)} Kafka partitions under-replicated", value=len(overview.under_replicated),
            detail=f"{len(overview.brokers)} brokers up. Partitions: " + ", ".join(overview.under_replicated[:20]),
        )
    return findings


CONDITIONS = {
    Kind.CONSUMER_LAG: consumer_lag,
    Kind.TIME_TO_DRAIN: time_to_drain,
    Kind.HEARTBEAT_MISSING: heartbeat_missing,
    Kind.URGENT_UNASSIGNED: urgent_unassigned,
    Kind.ARRIVAL_SPIKE: arrival_spike,
    Kind.REJECTION_RATIO: rejection_ratio,
    Kind.CLUSTER_DEGRADED: cluster_degraded,
}


# -- evaluation ----------------------------------------------------------------------------------------

@dataclass(slots=True)
class Evaluation:
    opened: list[Alert] = field(default_factory=list)
    resolved: list[Alert] = field(default_factory=list)
    notified: list[Alert] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def evaluate_rules(*, now: datetime | None = None) -> Evaluation:
    now = now or timezone.now()
    ctx = Context(now=now)
    evaluation = Evaluation()
    for rule in AlertRule.objects.filter(enabled=True).order_by("id"):
        try:
            findings = CONDITIONS[rule.kind](rule, ctx)
            if findings is None:
                continue  # no data: neither open nor resolve on a guess
            limit = conf.get("MONITORING_MAX_ALERTS_PER_RULE")
            findings = dict(list(findings.items())[:limit])
            opened = _apply(rule, findings, now, evaluation)
        except Exception as exc:  # one broken rule must not stop the others
            logger.exception("alert rule %s (%s) failed", rule.pk, rule.name)
            evaluation.errors[rule.name] = repr(exc)
            continue
        for alert in opened:
            if rule.acts_on_demands:
                _act(rule, alert, now)
    # Rules switched off or deleted: their open alerts end now rather than stay open forever.
    for alert in Alert.objects.filter(resolved_at__isnull=True).exclude(rule__enabled=True):
        with transaction.atomic():
            alert.resolved_at = now
            alert.detail = (alert.detail + "\nResolved because its rule was disabled or deleted.").strip()
            alert.save(update_fields=["resolved_at", "detail"])
        evaluation.resolved.append(alert)
    return evaluation


def _due(rule: AlertRule, alert: Alert, now: datetime) -> bool:
    if alert.silenced or alert.acknowledged_at is not None:
        return False
    if alert.last_notified_at is None:
        return True
    return bool(rule.renotify_minutes) and now - alert.last_notified_at >= timedelta(minutes=rule.renotify_minutes)


@transaction.atomic
def _apply(rule: AlertRule, findings: dict[str, Finding], now: datetime, evaluation: Evaluation) -> list[Alert]:
    rule = AlertRule.objects.select_for_update().get(pk=rule.pk)
    open_alerts = {alert.key: alert for alert in Alert.objects.filter(rule=rule, resolved_at__isnull=True)}
    silences = [s for s in Silence.objects.filter(ends_at__gt=now, starts_at__lte=now) if s.rule_id in (None, rule.pk)]
    opened = []
    for key, finding in findings.items():
        key = key[:200]
        alert = open_alerts.pop(key, None)
        if alert is None:
            alert = Alert(
                rule=rule, rule_name=rule.name, kind=rule.kind, key=key, severity=rule.severity,
                opened_at=now, demand_id=finding.demand_id,
            )
            opened.append(alert)
        alert.title = finding.title[:300]
        alert.detail = finding.detail
        alert.value = finding.value
        alert.last_seen_at = now
        alert.severity = rule.severity
        alert.silenced = any(s.matches(rule_id=rule.pk, key=key, now=now) for s in silences)
        event = None
        if _due(rule, alert, now):
            event = AlertDelivery.Event.FIRING if alert.notify_count == 0 else AlertDelivery.Event.RENOTIFY
            alert.last_notified_at = now
            alert.notify_count += 1
        alert.save()
        if event:
            enqueue_notifications(alert=alert, rule=rule, event=event, now=now)
            evaluation.notified.append(alert)
    for alert in open_alerts.values():
        alert.resolved_at = now
        silenced = any(s.matches(rule_id=rule.pk, key=alert.key, now=now) for s in silences)
        alert.save(update_fields=["resolved_at"])
        if rule.notify_on_resolve and alert.notify_count and not silenced:
            enqueue_notifications(alert=alert, rule=rule, event=AlertDelivery.Event.RESOLVED, now=now)
        evaluation.resolved.append(alert)
    evaluation.opened.extend(opened)
    return opened


def _act(rule: AlertRule, alert: Alert, now: datetime) -> None:
    """Raise priority / assign the alert's demands as the system, through the triage services."""
    try:
        from demands import services
    except ImportError:
        logger.warning("rule %s wants to act on demands, but demands.services is not available", rule.name)
        return
    if alert.demand_id is not None:
        demands = Demand.objects.filter(pk=alert.demand_id)
    elif rule.kind == Kind.ARRIVAL_SPIKE:
        demands = _spike_demands(rule, alert, now)
    else:
        return
    log = []
    for demand in demands:
        try:
            if rule.action_set_priority and demand.priority != rule.action_set_priority:
                demand = services.demand_set_priority(demand=demand, priority=rule.action_set_priority, actor=None)
                log.append(f"#{demand.pk}: priority → {rule.action_set_priority}")
            if rule.action_assign_to_id or rule.action_assign_team_id:
                demand = services.demand_assign(
                    demand=demand, assignee=rule.action_assign_to, team=rule.action_assign_team, actor=None
                )
                who = " / ".join(str(x) for x in (rule.action_assign_to, rule.action_assign_team) if x)
                log.append(f"#{demand.pk}: assigned to {who}")
        except Exception as exc:  # a demand changed meanwhile, a refused transition…: report, go on
            log.append(f"#{demand.pk}: not changed ({exc})")
    if log:
        Alert.objects.filter(pk=alert.pk).update(action_log="\n".join(log)[:20000])


def _spike_demands(rule: AlertRule, alert: Alert, now: datetime):
    demands = Demand.objects.filter(received_at__gte=window_start(now, rule.window_minutes), status__in=OPEN_STATUSES)
    kind, _sep, source = alert.key.partition(KEY_SEPARATOR)
    if rule.group_by == AlertRule.GroupBy.TYPE:
        demands = demands.filter(type=alert.key)
    elif rule.group_by == AlertRule.GroupBy.SOURCE:
        demands = demands.filter(source=alert.key)
    elif rule.group_by == AlertRule.GroupBy.TYPE_SOURCE:
        demands = demands.filter(type=kind, source=source)
    if rule.match_type:
        demands = demands.filter(type=rule.match_type)
    if rule.match_source:
        demands = demands.filter(source=rule.match_source)
    return demands.order_by("id")[: conf.get("MONITORING_MAX_ALERTS_PER_RULE")]


# -- what staff do with alerts ---------------------------------------------------------------------------

def alert_acknowledge(*, alert: Alert, actor, now: datetime | None = None) -> Alert:
    """Someone is on it: no more re-notifications for this alert (it still resolves by itself)."""
    if alert.acknowledged_at is None and alert.is_open:
        alert.acknowledged_at = now or timezone.now()
        alert.acknowledged_by = actor
        alert.save(update_fields=["acknowledged_at", "acknowledged_by"])
    return alert


def silence_create(
    *, rule: AlertRule | None, key_pattern: str = "", minutes: int, comment: str = "", actor=None, now: datetime | None = None
) -> Silence:
    now = now or timezone.now()
    if not 1 <= minutes <= 60 * 24 * 30:
        raise ValueError("a silence lasts from one minute to 30 days")
    silence = Silence(
        rule=rule, key_pattern=key_pattern[:200], starts_at=now, ends_at=now + timedelta(minutes=minutes),
        comment=comment[:500], created_by=actor, created_at=now,
    )
    silence.full_clean()
    silence.save()
    muted = [
        alert.pk
        for alert in Alert.objects.filter(resolved_at__isnull=True).only("pk", "rule_id", "key")
        if silence.matches(rule_id=alert.rule_id, key=alert.key, now=now)
    ]
    Alert.objects.filter(pk__in=muted).update(silenced=True)
    return silence


def alert_silence(*, alert: Alert, minutes: int, comment: str = "", actor=None, now: datetime | None = None) -> Silence:
    """Silence this alert's rule for exactly its key. An alert whose rule was deleted is refused:
    a silence without a rule mutes *every* rule for the key, which nobody asked for."""
    if alert.rule_id is None:
        raise UnscopedSilence("the alert's rule was deleted")
    return silence_create(
        rule=alert.rule, key_pattern=glob.escape(alert.key), minutes=minutes, comment=comment, actor=actor, now=now
    )


class UnscopedSilence(ValueError):
    pass


def silence_expire(*, silence: Silence, now: datetime | None = None) -> Silence:
    """End a silence now; alerts it muted are notified at the next evaluation if still open."""
    now = now or timezone.now()
    if silence.ends_at > now:
        silence.ends_at = max(now, silence.starts_at + timedelta(microseconds=1))
        silence.save(update_fields=["ends_at"])
    return silence
