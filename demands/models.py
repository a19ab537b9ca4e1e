"""Demands as stored: one row per (source, id), with where it came from in Kafka, and its triage."""

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy


class Status(models.TextChoices):
    NEW = "new", _("New")
    TRIAGED = "triaged", _("Triaged")
    IN_PROGRESS = "in_progress", _("In progress")
    RESOLVED = "resolved", _("Resolved")
    REJECTED = "rejected", _("Rejected")
    DUPLICATE = "duplicate", _("Duplicate")
    WAITING = "waiting", _("Waiting on reporter")


class SlaState(models.TextChoices):
    ON_TRACK = "on_track", _("On track")
    AT_RISK = "at_risk", _("At risk")
    BREACHED = "breached", _("Breached")
    MET = "met", _("Met")
    PAUSED = "paused", _("Paused")


class Priority(models.TextChoices):
    URGENT = "urgent", _("Urgent")
    HIGH = "high", _("High")
    NORMAL = "normal", _("Normal")
    LOW = "low", _("Low")


# Allowed status changes. Reopen (back to triaged) is allowed from every closed state. Waiting on
# the reporter is open; it stops the SLA clock (demands.sla.timers) until the demand moves on.
_WORK = {Status.TRIAGED, Status.IN_PROGRESS, Status.RESOLVED, Status.REJECTED, Status.DUPLICATE}
TRANSITIONS: dict[str, set[str]] = {
    Status.NEW: _WORK | {Status.WAITING},
    Status.TRIAGED: _WORK - {Status.TRIAGED} | {Status.WAITING},
    Status.IN_PROGRESS: _WORK - {Status.IN_PROGRESS} | {Status.WAITING},
    Status.WAITING: set(_WORK),
    Status.RESOLVED: {Status.TRIAGED},
    Status.REJECTED: {Status.TRIAGED},
    Status.DUPLICATE: {Status.TRIAGED},
}
CLOSED_STATUSES = {Status.RESOLVED, Status.REJECTED, Status.DUPLICATE}
# The working set: what lists, the live stream and the header counts show (not archived).
LIVE = models.Q(archived_at__isnull=True)
PRIORITY_RANK = {Priority.URGENT: 0, Priority.HIGH: 1, Priority.NORMAL: 2, Priority.LOW: 3}


def priority_rank() -> models.Case:
    """A priority's rank (urgent first; none last): the grouped list's priority sort, and its index."""
    return models.Case(*[models.When(priority=str(value), then=models.Value(n)) for value, n in PRIORITY_RANK.items()],
                       default=models.Value(len(PRIORITY_RANK)), output_field=models.IntegerField())


UNMERGED = models.Q(merged_into__isnull=True)


class Team(models.Model):
    name = models.CharField(_("name"), max_length=100, unique=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="demand_teams", blank=True, verbose_name=_("members"))

    class Meta:
        ordering = ["name"]
        verbose_name = _("team")
        verbose_name_plural = _("teams")

    def __str__(self) -> str:
        return self.name


class DemandGroup(models.Model):
    """Demands with one fingerprint (type + source + normalised content), shown once, Sentry-style."""

    # Unique by a constraint, not unique=True: that would add a second, LIKE-only index on PostgreSQL.
    fingerprint = models.CharField(_("fingerprint"), max_length=64)
    type = models.CharField(_("type"), max_length=64)
    source = models.CharField(_("source"), max_length=64)
    title = models.CharField(_("title"), max_length=200)
    count = models.PositiveIntegerField(_("count"), default=0)
    first_seen = models.DateTimeField(_("first seen"))
    last_seen = models.DateTimeField(_("last seen"), db_index=True)
    # Group triage (demands/groups/): applied to the open members through the demand services, and
    # to future members at ingest (grouping.count_group_members). Priority "" = not set: members keep theirs.
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.NEW)
    priority = models.CharField(_("priority"), max_length=16, choices=Priority.choices, blank=True, default="")
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", verbose_name=_("assignee"),
    )
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", verbose_name=_("team"))
    # Set when a new member arrived while the group was resolved (Sentry's "regression").
    regressed_at = models.DateTimeField(_("regressed at"), null=True, blank=True)
    # A merged group stays as the alias of its fingerprint: arrivals with it land in merged_into.
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="merged_groups", verbose_name=_("merged into"),
    )

    class Meta:
        ordering = ["-last_seen"]
        constraints = [models.UniqueConstraint(fields=["fingerprint"], name="demandgroup_unique_fingerprint")]
        # The grouped list's sorts (groups/selectors._ordered): a page reads 51 index entries, not every group.
        indexes = [models.Index(fields=["-count", "-last_seen", "-id"], name="group_count", condition=UNMERGED),
                   models.Index(fields=["-first_seen", "-id"], name="group_first_seen", condition=UNMERGED),
                   models.Index(fields=["-last_seen", "-id"], name="group_last_seen", condition=UNMERGED),
                   models.Index(priority_rank(), models.F("last_seen").desc(), models.F("id").desc(), name="group_priority",
                                condition=UNMERGED)]
        verbose_name = _("demand group")
        verbose_name_plural = _("demand groups")

    def __str__(self) -> str:
        return f"{self.type}/{self.source}: {self.title}"


class Demand(models.Model):
    # Identity as the sources define it: a second delivery of (source, message_id) changes nothing.
    source = models.CharField(_("source"), max_length=64)
    message_id = models.CharField(_("message id"), max_length=128)
    type = models.CharField(_("type"), max_length=64)
    content = models.TextField(_("content"))
    occurred_at = models.DateTimeField(_("occurred at"), help_text=_("The message's own timestamp."))
    priority = models.CharField(_("priority"), max_length=16, choices=Priority.choices, default=Priority.NORMAL)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.NEW)
    tags = models.JSONField(_("tags"), default=list, blank=True)
    extra = models.JSONField(_("extra fields"), default=dict, blank=True, help_text=_("Optional fields sent with the message, kept verbatim."))
    # What rules changed at ingest, each {"rule_id", "rule", "field", "old", "new"}: the first
    # entries of its history (selectors.demand_history), kept on the row that ingest writes anyway
    # instead of a history row each (~1 per demand with typical rules: 12 µs of every demand's
    # ~140 on the ingest hot path, bench/README.md). Later changes are DemandEvent rows.
    rule_changes = models.JSONField(_("rule changes at ingest"), default=list, blank=True)
    # How the demand came in when not straight from its source: {"via": "dlq-replay",
    # "rejected_message": id, "by": username} from a replay's Kafka headers. Null for the rest.
    origin = models.JSONField(_("origin"), null=True, blank=True)
    # Where it came from: the start of its traceable history.
    kafka_topic = models.CharField(_("Kafka topic"), max_length=249, blank=True)
    kafka_partition = models.IntegerField(_("Kafka partition"), null=True, blank=True)
    kafka_offset = models.BigIntegerField(_("Kafka offset"), null=True, blank=True)
    kafka_timestamp = models.DateTimeField(_("Kafka timestamp"), null=True, blank=True)
    received_at = models.DateTimeField(_("stored at"), default=timezone.now)
    # Triage.
    category = models.CharField(_("category"), max_length=64, blank=True)
    # No single-column indexes on these three: the (field, -id) indexes below lead with the same
    # column and serve joins and deletes too; every index costs on the hot insert path.
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="assigned_demands",
        verbose_name=_("assignee"), db_index=False,
    )
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="demands", verbose_name=_("team"), db_index=False
    )
    group = models.ForeignKey(
        DemandGroup, null=True, blank=True, on_delete=models.SET_NULL, related_name="demands", verbose_name=_("group"),
        db_index=False,
    )
    duplicate_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="duplicates", verbose_name=_("duplicate of")
    )
    # Optimistic concurrency: a change names the version it saw; a stale one is refused.
    version = models.PositiveIntegerField(_("version"), default=0)
    updated_at = models.DateTimeField(_("updated at"), default=timezone.now)
    first_action_at = models.DateTimeField(_("first action at"), null=True, blank=True)
    resolved_at = models.DateTimeField(_("resolved at"), null=True, blank=True)
    # Set when the demand leaves the working set (demands/archive): hidden from default lists, the
    # live stream and the header counts; still in its group and in monitoring. Null = live.
    archived_at = models.DateTimeField(_("archived at"), null=True, blank=True)
    # Its SLA (demands.sla): set at ingest and by the services, moved on by the monitor's tick.
    # The clock starts at received_at; time waiting on the reporter is added to every due time.
    sla_policy = models.ForeignKey(
        "SlaPolicy", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", verbose_name=_("SLA policy"),
        db_index=False,
    )
    sla_state = models.CharField(_("SLA state"), max_length=16, choices=SlaState.choices, blank=True)
    respond_by = models.DateTimeField(_("respond by"), null=True, blank=True)
    resolve_by = models.DateTimeField(_("resolve by"), null=True, blank=True)
    sla_due_at = models.DateTimeField(_("SLA due"), null=True, blank=True, help_text=_("The next target still open."))
    sla_check_at = models.DateTimeField(_("SLA next check"), null=True, blank=True, editable=False)  # when the timer looks next
    sla_paused_at = models.DateTimeField(_("SLA paused at"), null=True, blank=True, editable=False)
    sla_paused_seconds = models.FloatField(_("SLA paused (seconds)"), default=0, editable=False)  # business time waited on the reporter

    class Meta:
        ordering = ["-id"]
        verbose_name = _("demand")
        verbose_name_plural = _("demands")
        permissions = [
            ("triage_demand", "Can triage demands (status, priority, assignment, comments)"),
            ("replay_any_source", "Can replay a rejected message under another source"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["source", "message_id"], name="demand_unique_source_message_id"),
        ]
        indexes = [
            # Newest-first lists filtered by one field: keyset pagination walks these backwards.
            # Partial (live demands only, see demands/archive): lists leave archived demands out,
            # so millions of archived rows neither grow these nor sit in a walk's way.
            models.Index(fields=["status", "-id"], name="demand_status_id", condition=LIVE),
            models.Index(fields=["type", "-id"], name="demand_type_id", condition=LIVE),
            models.Index(fields=["source", "-id"], name="demand_source_id", condition=LIVE),
            models.Index(fields=["priority", "-id"], name="demand_priority_id", condition=LIVE),
            models.Index(fields=["assignee", "-id"], name="demand_assignee_id", condition=LIVE),
            models.Index(fields=["team", "-id"], name="demand_team_id", condition=LIVE),
            # Whole: a group counts its archived members too (merges, group pages).
            models.Index(fields=["group", "-id"], name="demand_group_id"),
            # The unfiltered list, and `?archived=only` (and the purge's walk).
            models.Index(fields=["-id"], name="demand_live_id", condition=LIVE),
            models.Index(fields=["-id"], name="demand_archived_id", condition=models.Q(archived_at__isnull=False)),
            # Partial: demands without an SLA (most, without policies) cost these nothing on insert.
            models.Index(fields=["sla_check_at"], name="demand_sla_check", condition=models.Q(sla_check_at__isnull=False)),
            models.Index(fields=["sla_due_at", "id"], name="demand_sla_due", condition=models.Q(sla_due_at__isnull=False)),
            models.Index(fields=["sla_policy"], name="demand_sla_policy", condition=models.Q(sla_policy__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.source}/{self.message_id}"

    @property
    def is_closed(self) -> bool:
        return self.status in CLOSED_STATUSES


class DemandEvent(models.Model):
    """One entry of a demand's history: who (a person, or a rule) changed what, when, old → new.
    Comments are events too. Ingest itself needs no row: the demand's own Kafka columns are that
    entry, which keeps the hot ingest path at one insert per demand."""

    class Kind(models.TextChoices):
        STATUS = "status", _("Status changed")
        PRIORITY = "priority", _("Priority changed")
        ASSIGNMENT = "assignment", _("Assignment changed")
        TEAM = "team", _("Team changed")
        TAGS = "tags", _("Tags changed")
        CATEGORY = "category", _("Category changed")
        DUPLICATE = "duplicate", _("Marked as duplicate")
        COMMENT = "comment", _("Comment")
        ARCHIVE = "archive", _("Archived or restored")
        SLA = "sla", _("SLA state changed")
        ESCALATION = "escalation", _("Escalated")

    # Indexes: (demand, id) below serves the demand's history and its deletes; actor only where
    # set (rules' entries, written at ingest, have none and skip that index).
    # No database constraint on demand: every entry is written in the transaction that inserts its
    # demand (ingest) or under that demand's row lock (services), and deleting a demand deletes its
    # history through Django's CASCADE. The constraint's check locked each new demand row again at
    # commit: ~7 µs of every ingested demand's ~140 (bench/README.md). Rules keep theirs.
    demand = models.ForeignKey(
        Demand, on_delete=models.CASCADE, related_name="events", verbose_name=_("demand"), db_index=False,
        db_constraint=False,
    )
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", verbose_name=_("actor"),
        db_index=False,
    )
    rule = models.ForeignKey("Rule", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", verbose_name=_("rule"))
    old_value = models.CharField(_("old value"), max_length=200, blank=True)
    new_value = models.CharField(_("new value"), max_length=200, blank=True)
    body = models.TextField(_("comment"), blank=True)
    # The system acting for an SLA policy (its escalation steps): shown as "SLA policy “X”".
    sla_policy = models.ForeignKey(
        "SlaPolicy", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", verbose_name=_("SLA policy"),
        db_index=False,
    )
    created_at = models.DateTimeField(_("at"), default=timezone.now)

    class Meta:
        ordering = ["id"]
        verbose_name = _("history entry")
        verbose_name_plural = _("history")
        indexes = [
            models.Index(fields=["demand", "id"], name="event_demand_id"),
            models.Index(fields=["actor"], name="event_actor", condition=models.Q(actor__isnull=False)),
            models.Index(fields=["sla_policy"], name="event_sla_policy", condition=models.Q(sla_policy__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.demand_id} {self.kind}: {self.old_value} → {self.new_value}"


class Rule(models.Model):
    """Ordered classification/routing rule applied at ingest: match on type/source/content, then act."""

    name = models.CharField(_("name"), max_length=100)
    order = models.PositiveIntegerField(_("order"), default=100, help_text=_("Lower runs first."))
    enabled = models.BooleanField(_("enabled"), default=True)
    match_types = models.CharField(_("types"), max_length=500, blank=True, help_text=_("Comma-separated; empty matches any."))
    match_sources = models.CharField(_("sources"), max_length=500, blank=True, help_text=_("Comma-separated; empty matches any."))
    match_keywords = models.CharField(
        _("content keywords"), max_length=500, blank=True, help_text=_("Comma-separated; any one matches (case-insensitive).")
    )
    match_regex = models.CharField(_("content regular expression"), max_length=500, blank=True)
    set_priority = models.CharField(_("set priority"), max_length=16, choices=Priority.choices, blank=True)
    add_tags = models.CharField(_("add tags"), max_length=500, blank=True, help_text=_("Comma-separated."))
    set_category = models.CharField(_("set category"), max_length=64, blank=True)
    assign_to = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", verbose_name=_("assign to"),
        limit_choices_to={"is_staff": True, "is_active": True},
    )
    assign_team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", verbose_name=_("assign to team"))
    stop_processing = models.BooleanField(_("stop after this rule"), default=False)
    archive_on_arrival = models.BooleanField(
        _("archive on arrival"), default=False,
        help_text=_("Known noise: stored, grouped and counted, but archived at once (not in lists or the live stream)."),
    )
    # "System modules": a matching demand is also posted to this channel (demands/outbound).
    notify_channel = models.ForeignKey(
        "OutboundChannel", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", verbose_name=_("notify channel"),
    )
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    # Set by ingest, cleared when the rule is saved in the admin: why the rule is being skipped
    # (a pattern the linear-time engine refuses, or an error while matching).
    match_error = models.TextField(_("match error"), blank=True, editable=False)
    match_error_at = models.DateTimeField(_("match error at"), null=True, blank=True, editable=False)

    class Meta:
        ordering = ["order", "id"]
        verbose_name = _("rule")
        verbose_name_plural = _("rules")

    def __str__(self) -> str:
        return self.name


class SavedView(models.Model):
    """A named set of list filters, per user."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saved_views", verbose_name=_("user"))
    name = models.CharField(_("name"), max_length=100)
    query = models.CharField(_("filters"), max_length=1000)
    # New demands matching the view notify its owner (Notification.Kind.SAVED_VIEW; checked at ingest).
    notify = models.BooleanField(_("notify me of new demands"), default=False)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["user", "name"], name="savedview_unique_user_name")]
        verbose_name = _("saved view")
        verbose_name_plural = _("saved views")

    def __str__(self) -> str:
        return self.name


class Notification(models.Model):
    """Something a user should see: a demand assigned to them or their team, a comment on theirs,
    an SLA or escalation step. `kind` is what subscriptions and outbound channels select on."""

    class Kind(models.TextChoices):
        ASSIGNED = "assigned", _("assigned to me")
        TEAM = "team", _("assigned to my team")
        COMMENT = "comment", _("comment")
        SLA = "sla", _("SLA at risk or breached")
        ESCALATION = "escalation", _("escalation")
        SAVED_VIEW = "saved_view", _("new demand in a saved view")

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="demand_notifications", verbose_name=_("user"))
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices, default=Kind.ASSIGNED)
    demand = models.ForeignKey(Demand, on_delete=models.CASCADE, related_name="+", verbose_name=_("demand"))
    text = models.CharField(_("text"), max_length=300)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    read_at = models.DateTimeField(_("read at"), null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["user", "read_at", "-id"], name="notification_user_unread")]
        verbose_name = _("notification")
        verbose_name_plural = pgettext_lazy("model", "notifications")

    def __str__(self) -> str:
        return self.text


class UserPreference(models.Model):
    """Per-user interface language and time zone (activated by demands.middleware)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="demand_preference", verbose_name=_("user"))
    language = models.CharField(_("language"), max_length=16, choices=settings.LANGUAGES, blank=True)
    time_zone = models.CharField(_("time zone"), max_length=64, blank=True)

    class Meta:
        verbose_name = _("user preference")
        verbose_name_plural = _("user preferences")

    def __str__(self) -> str:
        return f"{self.user}: {self.language or '-'} {self.time_zone or '-'}"


# Monitoring and alerting models (issue 4) live in their own module; imported here so they belong to this app.
from .monitoring.models import *  # noqa: E402,F401,F403
# Sources without Kafka clients and the dead-letter queue: SourceApiKey, RejectedMessage.
from .intake.models import *  # noqa: E402,F401,F403
# RabbitMQ sources as monitoring sees them: bridge heartbeats, queue samples.
from .monitoring.amqp_samples import *  # noqa: E402,F401,F403
# Group triage: its history and hourly arrival counts (the sparklines).
from .groups.models import *  # noqa: E402,F401,F403
# Notifications outside the browser: channels, subscriptions, follows, the outbox (demands/outbound).
from .outbound.models import *  # noqa: E402,F401,F403
# SLA policies, escalation steps and their firings (issue 17).
from .sla.models import *  # noqa: E402,F401,F403
