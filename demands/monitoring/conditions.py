"""Alert conditions: rule, context → {key: Finding} while the condition holds, or None when it
cannot tell (e.g. no fresh lag sample: then nothing changes). `alerts.evaluate_rules` runs them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings

from demands.models import Demand, Priority

from . import amqp, conf
from .cluster import cluster_overview
from .flow import OPEN_STATUSES
from .heartbeat import consumer_states
from .lag import LagOverview, lag_overview
from .metrics import flow_totals, window_start
from .models import AlertRule, FlowBucket

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
    rows = [(hb, state) for hb, state in consumer_states(now=ctx.now) if hb.group == group]
    states = {hb.pk: state for hb, state in rows}
    consumers = [hb for hb, _state in rows]
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
        if hb.stopped_at is not None or silent_for <= rule.threshold or states.get(hb.pk) == "replaced":
            continue  # signed off, still beating, or its partitions are owned by live consumers again
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
        priority=Priority.URGENT, status__in=OPEN_STATUSES, assignee__isnull=True, team__isnull=True, received_at__lte=cutoff,
        archived_at__isnull=True,  # archived noise needs nobody; and the partial index serves only live rows
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


def amqp_depth_growing(rule: AlertRule, ctx: Context) -> dict[str, Finding] | None:
    """A RabbitMQ queue's depth above threshold and rising over the window (monitoring/amqp.py)."""
    found = amqp.depth_growing(rule, now=ctx.now)
    return None if found is None else {key: Finding(**fields) for key, fields in found.items()}


def amqp_bridge_dead(rule: AlertRule, ctx: Context) -> dict[str, Finding]:
    """A configured RabbitMQ queue that no bridge with a fresh heartbeat reads (monitoring/amqp.py)."""
    return {key: Finding(**fields) for key, fields in amqp.bridge_dead(rule, now=ctx.now).items()}


CONDITIONS = {
    Kind.CONSUMER_LAG: consumer_lag,
    Kind.TIME_TO_DRAIN: time_to_drain,
    Kind.HEARTBEAT_MISSING: heartbeat_missing,
    Kind.URGENT_UNASSIGNED: urgent_unassigned,
    Kind.ARRIVAL_SPIKE: arrival_spike,
    Kind.REJECTION_RATIO: rejection_ratio,
    Kind.CLUSTER_DEGRADED: cluster_degraded,
    Kind.AMQP_DEPTH_GROWING: amqp_depth_growing,
    Kind.AMQP_BRIDGE_DEAD: amqp_bridge_dead,
}


# -- evaluation ----------------------------------------------------------------------------------------
