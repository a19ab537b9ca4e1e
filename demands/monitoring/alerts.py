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

from django.db import transaction
from django.utils import timezone

from demands.models import Demand

from . import conf
from .conditions import CONDITIONS, Context, Finding
from .flow import OPEN_STATUSES
from .metrics import KEY_SEPARATOR, window_start
from .models import Alert, AlertDelivery, AlertRule, Silence
from .notify import enqueue_notifications

logger = logging.getLogger(__name__)
Kind = AlertRule.Kind


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
