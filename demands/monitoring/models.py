"""Monitoring data (per-minute buckets, lag samples, heartbeats) and alerting (rules, alerts, silences).

Imported at the bottom of demands/models.py, so these are models of the `demands` app. Buckets are
keyed by the minute they describe and written with INSERT … ON CONFLICT, so history survives
restarts and several writers (consumers, monitors) add up instead of overwriting each other.
"""

from __future__ import annotations

import fnmatch

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

__all__ = [
    "FlowBucket",
    "LatencyBucket",
    "BacklogSample",
    "ConsumerHeartbeat",
    "MonitoringCursor",
    "AlertRule",
    "Alert",
    "AlertDelivery",
    "Silence",
]

_PRIORITY_CHOICES = [("urgent", _("Urgent")), ("high", _("High")), ("normal", _("Normal")), ("low", _("Low"))]


class FlowBucket(models.Model):
    """How many demands arrived / were resolved / were rejected in one minute, per type and source."""

    class Kind(models.TextChoices):
        ARRIVAL = "arrival", _("Arrivals")
        RESOLUTION = "resolution", _("Resolutions")
        REJECTION = "rejection", _("Rejections")

    minute = models.DateTimeField(_("minute"))
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    type = models.CharField(_("type"), max_length=64, blank=True)
    source = models.CharField(_("source"), max_length=64, blank=True)
    count = models.BigIntegerField(_("count"), default=0)

    class Meta:
        ordering = ["-minute", "kind", "type", "source"]
        verbose_name = _("flow bucket")
        verbose_name_plural = _("flow buckets")
        constraints = [
            # Also the index for "the last N minutes": minute leads.
            models.UniqueConstraint(fields=["minute", "kind", "type", "source"], name="flowbucket_unique_key"),
        ]

    def __str__(self) -> str:
        return f"{self.minute:%Y-%m-%d %H:%M} {self.kind} {self.type}/{self.source}: {self.count}"


class LatencyBucket(models.Model):
    """One histogram bucket of one minute: how many observations were ≤ le_ms (and above the previous bound).

    Histograms merge by adding counts, so percentiles over any window come from stored minutes.
    """

    class Metric(models.TextChoices):
        INGEST = "ingest", _("Ingest latency (Kafka timestamp → stored)")
        FIRST_ACTION = "first_action", _("Time to first action")

    minute = models.DateTimeField(_("minute"))
    metric = models.CharField(_("metric"), max_length=16, choices=Metric.choices)
    le_ms = models.BigIntegerField(_("upper bound (ms)"))
    count = models.BigIntegerField(_("count"), default=0)
    sum_ms = models.BigIntegerField(_("sum (ms)"), default=0)

    class Meta:
        ordering = ["-minute", "metric", "le_ms"]
        verbose_name = _("latency bucket")
        verbose_name_plural = _("latency buckets")
        constraints = [models.UniqueConstraint(fields=["minute", "metric", "le_ms"], name="latencybucket_unique_key")]

    def __str__(self) -> str:
        return f"{self.minute:%Y-%m-%d %H:%M} {self.metric} ≤{self.le_ms}ms: {self.count}"


class BacklogSample(models.Model):
    """Open demands by status and priority, as last seen in that minute (zero rows are not stored)."""

    minute = models.DateTimeField(_("minute"))
    status = models.CharField(_("status"), max_length=16)
    priority = models.CharField(_("priority"), max_length=16)
    count = models.BigIntegerField(_("count"), default=0)

    class Meta:
        ordering = ["-minute", "status", "priority"]
        verbose_name = _("backlog sample")
        verbose_name_plural = _("backlog samples")
        constraints = [models.UniqueConstraint(fields=["minute", "status", "priority"], name="backlogsample_unique_key")]


class ConsumerHeartbeat(models.Model):
    """One consume loop's liveness: written every few seconds while it runs, stamped when it stops."""

    name = models.CharField(_("name"), max_length=200, unique=True)
    hostname = models.CharField(_("host"), max_length=200)
    pid = models.IntegerField(_("process id"))
    group = models.CharField(_("consumer group"), max_length=255)
    topics = models.CharField(_("topics"), max_length=1000)
    started_at = models.DateTimeField(_("started at"))
    last_seen_at = models.DateTimeField(_("last heartbeat"), db_index=True)
    stopped_at = models.DateTimeField(_("stopped at"), null=True, blank=True)
    stop_error = models.TextField(_("stopped because of"), blank=True)
    assignment = models.JSONField(_("assigned partitions"), default=list, blank=True)
    batches = models.BigIntegerField(_("batches"), default=0)
    messages = models.BigIntegerField(_("messages"), default=0)

    class Meta:
        ordering = ["-last_seen_at"]
        verbose_name = _("consumer heartbeat")
        verbose_name_plural = _("consumer heartbeats")

    def __str__(self) -> str:
        return self.name

    def state(self, now, dead_after: float) -> str:
        """alive | dead (no heartbeat for dead_after seconds, never said goodbye) | stopped | failed."""
        if self.stopped_at is not None:
            return "failed" if self.stop_error else "stopped"
        if (now - self.last_seen_at).total_seconds() > dead_after:
            return "dead"
        return "alive"


class MonitoringCursor(models.Model):
    """Progress of a roll-up (the last history event counted), and the monitor's own liveness."""

    name = models.CharField(max_length=64, unique=True)
    position = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.name}@{self.position}"


class AlertRule(models.Model):
    """A condition the monitor checks every tick; each key for which it holds is one open alert."""

    class Kind(models.TextChoices):
        CONSUMER_LAG = "consumer_lag", _("Consumer lag above threshold (messages)")
        TIME_TO_DRAIN = "time_to_drain", _("Estimated time to drain above threshold (seconds)")
        HEARTBEAT_MISSING = "heartbeat_missing", _("No consumer heartbeat for threshold seconds")
        URGENT_UNASSIGNED = "urgent_unassigned", _("Urgent demand unassigned for window minutes")
        ARRIVAL_SPIKE = "arrival_spike", _("More than threshold arrivals in window minutes (spike)")
        REJECTION_RATIO = "rejection_ratio", _("Rejected share of messages above threshold (0–1) in window minutes")
        CLUSTER_DEGRADED = "cluster_degraded", _("Kafka cluster: more than threshold partitions under-replicated or offline, or unreachable")
        AMQP_DEPTH_GROWING = "amqp_depth_growing", _("RabbitMQ queue depth above threshold and rising over window minutes")
        AMQP_BRIDGE_DEAD = "amqp_bridge_dead", _("RabbitMQ queue without a live bridge heartbeat for threshold seconds")

    class Severity(models.TextChoices):
        INFO = "info", _("Info")
        WARNING = "warning", _("Warning")
        CRITICAL = "critical", _("Critical")

    class GroupBy(models.TextChoices):
        ALL = "all", _("All together")
        TYPE = "type", _("Per type")
        SOURCE = "source", _("Per source")
        TYPE_SOURCE = "type_source", _("Per type and source")

    name = models.CharField(_("name"), max_length=100)
    enabled = models.BooleanField(_("enabled"), default=True)
    kind = models.CharField(_("condition"), max_length=32, choices=Kind.choices)
    severity = models.CharField(_("severity"), max_length=16, choices=Severity.choices, default=Severity.WARNING)
    threshold = models.FloatField(
        _("threshold"), default=0,
        help_text=_("Lag: messages. Time to drain: seconds. Heartbeat: seconds without one. Spike: arrivals. "
                    "Rejection ratio: 0–1. Not used for urgent-unassigned."),
    )
    window_minutes = models.PositiveIntegerField(
        _("window (minutes)"), default=5,
        help_text=_("Spike and rejection ratio: the window counted (the current minute and the ones before it). "
                    "Urgent unassigned: minutes a demand may wait."),
    )
    min_messages = models.PositiveIntegerField(
        _("minimum messages"), default=20, help_text=_("Rejection ratio: fewer messages than this in the window never fire.")
    )
    consumer_group = models.CharField(_("consumer group"), max_length=255, blank=True, help_text=_("Lag, drain, heartbeat: empty means the configured group."))
    match_type = models.CharField(_("only type"), max_length=64, blank=True)
    match_source = models.CharField(_("only source"), max_length=64, blank=True)
    group_by = models.CharField(_("one alert"), max_length=16, choices=GroupBy.choices, default=GroupBy.TYPE_SOURCE, help_text=_("Spike and rejection ratio."))
    # Notification.
    renotify_minutes = models.PositiveIntegerField(_("re-notify every (minutes)"), default=60, help_text=_("0: notify once per alert."))
    notify_browser = models.BooleanField(_("notify in the browser"), default=True)
    notify_on_resolve = models.BooleanField(_("notify when resolved"), default=True)
    email_to = models.CharField(_("e-mail to"), max_length=1000, blank=True, help_text=_("Comma-separated addresses."))
    webhook_url = models.URLField(_("webhook URL"), max_length=500, blank=True)
    webhook_secret = models.CharField(
        _("webhook secret"), max_length=200, blank=True, help_text=_("HMAC-SHA256 key; empty uses MONITORING_WEBHOOK_SECRET.")
    )
    # Acting on demands (through the triage services, as the system), once when an alert opens.
    action_set_priority = models.CharField(_("then set priority"), max_length=16, choices=_PRIORITY_CHOICES, blank=True)
    action_assign_to = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", verbose_name=_("then assign to")
    )
    action_assign_team = models.ForeignKey(
        "demands.Team", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", verbose_name=_("then assign to team")
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        ordering = ["name", "id"]
        verbose_name = _("alert rule")
        verbose_name_plural = _("alert rules")

    def __str__(self) -> str:
        return self.name

    @property
    def masked_webhook_url(self) -> str:
        from .webhooks import mask_url

        return mask_url(self.webhook_url)

    @property
    def acts_on_demands(self) -> bool:
        return bool(self.action_set_priority or self.action_assign_to_id or self.action_assign_team_id)

    def clean(self):
        errors = {}
        if self.kind == self.Kind.REJECTION_RATIO and not 0 < self.threshold <= 1:
            errors["threshold"] = _("A ratio between 0 and 1, e.g. 0.2 for 20 %.")
        elif self.kind in {self.Kind.CONSUMER_LAG, self.Kind.ARRIVAL_SPIKE} and self.threshold < 0:
            errors["threshold"] = _("Cannot be negative.")
        elif self.kind in {self.Kind.TIME_TO_DRAIN, self.Kind.HEARTBEAT_MISSING} and self.threshold <= 0:
            errors["threshold"] = _("Seconds, more than 0.")
        if self.kind in {self.Kind.ARRIVAL_SPIKE, self.Kind.REJECTION_RATIO, self.Kind.URGENT_UNASSIGNED} and self.window_minutes < 1:
            errors["window_minutes"] = _("At least one minute.")
        if self.acts_on_demands and self.kind not in {self.Kind.URGENT_UNASSIGNED, self.Kind.ARRIVAL_SPIKE}:
            errors["action_set_priority"] = _("Only urgent-unassigned and spike rules concern demands to act on.")
        if errors:
            raise ValidationError(errors)


class Alert(models.Model):
    """A rule's condition holding for one key. At most one open alert per (rule, key); it resolves itself."""

    rule = models.ForeignKey(AlertRule, null=True, on_delete=models.SET_NULL, related_name="alerts", verbose_name=_("rule"))
    rule_name = models.CharField(_("rule name"), max_length=100)  # kept when the rule is deleted
    kind = models.CharField(_("condition"), max_length=32, choices=AlertRule.Kind.choices)
    key = models.CharField(_("key"), max_length=200)
    severity = models.CharField(_("severity"), max_length=16, choices=AlertRule.Severity.choices)
    title = models.CharField(_("title"), max_length=300)
    detail = models.TextField(_("detail"), blank=True)
    value = models.FloatField(_("value"), null=True, blank=True)
    demand = models.ForeignKey("demands.Demand", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", verbose_name=_("demand"))
    opened_at = models.DateTimeField(_("opened at"))
    last_seen_at = models.DateTimeField(_("condition last seen"))
    resolved_at = models.DateTimeField(_("resolved at"), null=True, blank=True)
    last_notified_at = models.DateTimeField(_("last notified at"), null=True, blank=True)
    notify_count = models.PositiveIntegerField(_("notifications"), default=0)
    silenced = models.BooleanField(_("silenced"), default=False)
    acknowledged_at = models.DateTimeField(_("acknowledged at"), null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", verbose_name=_("acknowledged by")
    )
    action_log = models.TextField(_("actions taken"), blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = _("alert")
        verbose_name_plural = _("alerts")
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "key"], condition=models.Q(resolved_at__isnull=True), name="alert_one_open_per_rule_key"
            ),
        ]
        indexes = [models.Index(fields=["rule", "key", "-id"], name="alert_rule_key")]

    def __str__(self) -> str:
        return self.title

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


class AlertDelivery(models.Model):
    """One notification of an alert on one channel; webhooks and e-mail are retried from here (an outbox)."""

    class Channel(models.TextChoices):
        BROWSER = "browser", _("Browser")
        WEBHOOK = "webhook", _("Webhook")
        EMAIL = "email", _("E-mail")

    class Event(models.TextChoices):
        FIRING = "firing", _("Firing")
        RENOTIFY = "renotify", _("Still firing")
        RESOLVED = "resolved", _("Resolved")

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        SENDING = "sending", _("Sending")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Gave up")

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries", verbose_name=_("alert"))
    channel = models.CharField(_("channel"), max_length=16, choices=Channel.choices)
    event = models.CharField(_("event"), max_length=16, choices=Event.choices)
    target = models.CharField(_("to"), max_length=1000, blank=True)
    payload = models.JSONField(_("payload"), default=dict)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt at"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    response_status = models.IntegerField(_("HTTP status"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)

    class Meta:
        ordering = ["id"]
        verbose_name = _("alert delivery")
        verbose_name_plural = _("alert deliveries")
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="alertdelivery_due")]

    def __str__(self) -> str:
        return f"{self.channel} {self.event} of alert {self.alert_id}: {self.status}"

    @property
    def masked_target(self) -> str:
        """The target as anyone but a superuser may see it: a webhook URL is a credential."""
        from .webhooks import mask_url

        return mask_url(self.target) if self.channel == self.Channel.WEBHOOK else self.target


class Silence(models.Model):
    """Mute notifications of matching alerts until `ends_at`. Alerts still open and are kept in the history."""

    rule = models.ForeignKey(
        AlertRule, null=True, blank=True, on_delete=models.CASCADE, related_name="silences", verbose_name=_("rule"),
        help_text=_("Empty: every rule."),
    )
    key_pattern = models.CharField(
        _("key pattern"), max_length=200, blank=True, help_text=_("Shell-style pattern (e.g. demand-topic/*); empty matches every key.")
    )
    starts_at = models.DateTimeField(_("starts at"), default=timezone.now)
    ends_at = models.DateTimeField(_("ends at"))
    comment = models.CharField(_("comment"), max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", verbose_name=_("created by")
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        ordering = ["-ends_at"]
        verbose_name = _("silence")
        verbose_name_plural = _("silences")

    def __str__(self) -> str:
        return f"{self.rule or _('every rule')} {self.key_pattern or '*'} until {self.ends_at:%Y-%m-%d %H:%M}"

    def clean(self):
        if self.ends_at and self.starts_at and self.ends_at <= self.starts_at:
            raise ValidationError({"ends_at": _("A silence must end after it starts.")})

    def is_active(self, now) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, *, rule_id: int | None, key: str, now) -> bool:
        if not self.is_active(now):
            return False
        if self.rule_id is not None and self.rule_id != rule_id:
            return False
        return not self.key_pattern or fnmatch.fnmatchcase(key, self.key_pattern)


# What the monitor samples from the broker (lag per partition, the cluster's state).
from .samples import *  # noqa: E402,F401,F403
__all__ += ["LagSample", "ClusterSample"]
# What pruned flow buckets added up to, for /metrics' counters (see counters.py).
from .totals import *  # noqa: E402,F401,F403
__all__ += ["FlowTotal"]
