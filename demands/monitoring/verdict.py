"""Is it healthy? One verdict — healthy, degraded or down, with the reasons — computed here and
shown by the monitoring page's banner and every page's header summary (and pushed by each tick).

Down: nothing is being consumed or the broker cannot be used — no live consumer in the group,
the Kafka cluster unreachable or partitions without a leader, a lag that is not being consumed
(stalled), or an open critical alert of a pipeline rule. Degraded: it works, but watch it — dead
consumers whose partitions nobody took over, under-replicated partitions, a growing lag, a high
share of rejected messages, the monitor itself not running, other open alerts. Each reason links
to the card or alert that explains it. Reasons are translated when rendered (`Reason.text`),
so one verdict renders in every reader's language.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Sum
from django.urls import reverse
from django.utils.translation import gettext, gettext_noop, ngettext

from . import conf
from .cluster import ClusterOverview, cluster_overview
from .flow import floor_minute
from .heartbeat import consumer_states
from .lag import LagOverview, lag_overview
from .models import Alert, AlertRule, FlowBucket, MonitoringCursor

HEALTHY, DEGRADED, DOWN = "healthy", "degraded", "down"
# Alert kinds about the pipeline itself: a critical one open means it is down, not just degraded.
PIPELINE_KINDS = {
    AlertRule.Kind.HEARTBEAT_MISSING, AlertRule.Kind.CLUSTER_DEGRADED, AlertRule.Kind.CONSUMER_LAG,
    AlertRule.Kind.TIME_TO_DRAIN, AlertRule.Kind.REJECTION_RATIO,
}
REJECT_WINDOW_MINUTES = 5
SHOWN_ALERTS = 5
REJECTED_URL = "demands:rejected"


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    level: str  # DOWN | DEGRADED
    message: str  # an English msgid (marked with gettext_noop), %-formatted with params
    params: dict = field(default_factory=dict)
    href: str = ""
    plural: str = ""  # with `count`: ngettext(message, plural, count)
    count: int | None = None

    @property
    def text(self) -> str:
        """In the active language: rendered once per language, so never stored translated."""
        if self.plural:
            return ngettext(self.message, self.plural, self.count or 0) % self.params
        return gettext(self.message) % self.params


@dataclass(slots=True)
class Verdict:
    state: str
    reasons: list[Reason]

    @property
    def label(self) -> str:
        return {HEALTHY: gettext("Healthy"), DEGRADED: gettext("Degraded"), DOWN: gettext("Down")}[self.state]

    @property
    def health(self) -> str:
        """The header dot's class: ok | warning | critical."""
        return {HEALTHY: "ok", DEGRADED: "warning", DOWN: "critical"}[self.state]


def compute_verdict(
    *, now: datetime, group: str | None = None, consumers=None, lag: LagOverview | None | bool = False,
    cluster: ClusterOverview | None | bool = False, open_alerts=None,
) -> Verdict:
    """The verdict now. Callers that already read consumers, lag, cluster or open alerts pass them
    (False: not read yet) so a page or tick reads each once."""
    group = group or settings.KAFKA_CONSUMER_GROUP
    consumers = consumer_states(now=now) if consumers is None else consumers
    lag = lag_overview(group=group, now=now) if lag is False else lag
    cluster = cluster_overview(now=now) if cluster is False else cluster
    if open_alerts is None:
        open_alerts = list(Alert.objects.filter(resolved_at__isnull=True, silenced=False).order_by("-id")[:100])
    monitoring = reverse("demands:monitoring:index")
    reasons: list[Reason] = []
    add = reasons.append

    tick = MonitoringCursor.objects.filter(name="tick").values_list("updated_at", flat=True).first()
    stale_after = 3 * conf.get("MONITORING_TICK_SECONDS") + 30
    if tick is None or (now - tick).total_seconds() > stale_after:
        add(Reason("monitor_stale", DEGRADED, gettext_noop("The monitor is not running: lag, cluster and alerts are not being checked"),
                   href=f"{monitoring}#monitor-stats"))

    if cluster is not None and cluster:
        if not cluster.reachable:
            add(Reason("cluster_unreachable", DOWN, gettext_noop("Kafka cluster unreachable"), href=f"{monitoring}#cluster-card"))
        elif cluster.offline:
            add(Reason("partitions_offline", DOWN, gettext_noop("%(n)s Kafka partition offline (no leader)"),
                       {"n": len(cluster.offline)}, f"{monitoring}#cluster-card",
                       gettext_noop("%(n)s Kafka partitions offline (no leader)"), len(cluster.offline)))
        elif cluster.under_replicated:
            add(Reason("under_replicated", DEGRADED, gettext_noop("%(n)s Kafka partition under-replicated"),
                       {"n": len(cluster.under_replicated)}, f"{monitoring}#cluster-card",
                       gettext_noop("%(n)s Kafka partitions under-replicated"), len(cluster.under_replicated)))

    mine = [(hb, state) for hb, state in consumers if hb.group == group]
    alive = sum(1 for _hb, state in mine if state == "alive")
    dead = sum(1 for _hb, state in mine if state == "dead")
    if not alive:
        add(Reason("no_consumer", DOWN, gettext_noop("No live consumer in group %(group)s"), {"group": group},
                   f"{monitoring}#consumers-card"))
    elif dead:
        add(Reason("consumers_dead", DEGRADED, gettext_noop("%(n)s consumer dead and its partitions not taken over"),
                   {"n": dead}, f"{monitoring}#consumers-card",
                   gettext_noop("%(n)s consumers dead and their partitions not taken over"), dead))

    if lag:
        if lag.drain.state == "stalled":
            add(Reason("lag_stalled", DOWN, gettext_noop("Lag %(lag)s is not being consumed (stalled)"),
                       {"lag": f"{lag.total:,}"}, f"{monitoring}#lag-card"))
        elif lag.drain.state == "growing":
            add(Reason("lag_growing", DEGRADED, gettext_noop("Lag %(lag)s is growing"), {"lag": f"{lag.total:,}"},
                       f"{monitoring}#lag-card"))

    ratio = reject_ratio(now=now)
    if ratio is not None and ratio > conf.get("MONITORING_VERDICT_REJECT_RATIO"):
        add(Reason("rejections", DEGRADED, gettext_noop("%(share)s of messages rejected in the last %(minutes)s minutes"),
                   {"share": f"{ratio:.0%}", "minutes": REJECT_WINDOW_MINUTES}, reverse(REJECTED_URL)))

    for alert in open_alerts[:SHOWN_ALERTS]:
        critical = alert.severity == AlertRule.Severity.CRITICAL and alert.kind in PIPELINE_KINDS
        add(Reason(f"alert:{alert.pk}", DOWN if critical else DEGRADED, gettext_noop("Alert: %(title)s"),
                   {"title": alert.title}, reverse("demands:monitoring:alert", args=[alert.pk])))
    if len(open_alerts) > SHOWN_ALERTS:
        more = len(open_alerts) - SHOWN_ALERTS
        add(Reason("alerts_more", DEGRADED, gettext_noop("and %(n)s more open alert"), {"n": more},
                   reverse("demands:monitoring:alerts") + "?state=open", gettext_noop("and %(n)s more open alerts"), more))

    levels = {reason.level for reason in reasons}
    state = DOWN if DOWN in levels else DEGRADED if reasons else HEALTHY
    reasons.sort(key=lambda reason: reason.level != DOWN)  # the worst first (stable otherwise)
    return Verdict(state=state, reasons=reasons)


def reject_ratio(*, now: datetime) -> float | None:
    """Rejected share of the messages of the last REJECT_WINDOW_MINUTES; None below the minimum count."""
    start = floor_minute(now) - timedelta(minutes=REJECT_WINDOW_MINUTES - 1)
    counts = dict(
        FlowBucket.objects.filter(minute__gte=start, kind__in=[FlowBucket.Kind.ARRIVAL, FlowBucket.Kind.REJECTION])
        .values("kind").annotate(n=Sum("count")).order_by().values_list("kind", "n")
    )
    rejected = counts.get(FlowBucket.Kind.REJECTION, 0) or 0
    total = rejected + (counts.get(FlowBucket.Kind.ARRIVAL, 0) or 0)
    if total < max(conf.get("MONITORING_VERDICT_MIN_MESSAGES"), 1):
        return None
    return rejected / total

