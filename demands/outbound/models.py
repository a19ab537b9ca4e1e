"""Notifications outside the browser: channels (a team's chat robot, a webhook), who subscribes to
which kinds, who follows a demand, and the outbox of messages (one row per recipient route).

Star-imported by demands.models, so the app label stays `demands` (models named by string: that
module imports this one). `kind` holds a Notification.Kind value; its choices are checked where
subscriptions are written (outbound.subscriptions) and shown by label there.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


__all__ = ["OutboundChannel", "Subscription", "Follow", "OutboundMessage"]


class OutboundChannel(models.Model):
    """Where a team (or a rule, for "system modules") is told: a chat robot or a webhook URL."""

    class Kind(models.TextChoices):
        WECOM = "wecom", _("WeCom group robot")
        DINGTALK = "dingtalk", _("DingTalk custom robot")
        FEISHU = "feishu", _("Feishu/Lark custom bot")
        SLACK = "slack", _("Slack incoming webhook")
        WEBHOOK = "webhook", _("Signed webhook")
        EMAIL = "email", _("E-mail list")

    name = models.CharField(_("name"), max_length=100)
    kind = models.CharField(_("platform"), max_length=16, choices=Kind.choices)
    target = models.CharField(_("URL or addresses"), max_length=1000, help_text=_(
        "The robot's webhook URL (a credential: only superusers see it whole), or comma-separated e-mail addresses."
    ))
    secret = models.CharField(_("signing secret"), max_length=200, blank=True, help_text=_(
        "DingTalk's and Feishu's signing secret, or the shared secret of a signed webhook."
    ))
    team = models.ForeignKey("Team", null=True, blank=True, on_delete=models.CASCADE, related_name="outbound_channels",
                             verbose_name=_("team"))
    language = models.CharField(_("language"), max_length=16, choices=settings.LANGUAGES, blank=True,
                                help_text=_("Messages are written in this language (empty: the site's)."))
    enabled = models.BooleanField(_("enabled"), default=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        ordering = ["name", "id"]
        verbose_name = _("notification channel")
        verbose_name_plural = _("notification channels")

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"


class Subscription(models.Model):
    """One kind of notification sent on one route: a user's own (to their e-mail when `channel` is
    empty, or to a channel), or a team's (any member's notification, to the team's channel)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
                             related_name="demand_subscriptions", verbose_name=_("user"))
    team = models.ForeignKey("Team", null=True, blank=True, on_delete=models.CASCADE, related_name="subscriptions",
                             verbose_name=_("team"))
    kind = models.CharField(_("kind"), max_length=16)
    channel = models.ForeignKey(OutboundChannel, null=True, blank=True, on_delete=models.CASCADE,
                                related_name="subscriptions", verbose_name=_("channel"),
                                help_text=_("Empty: the user's own e-mail address."))

    class Meta:
        ordering = ["id"]
        verbose_name = _("notification subscription")
        verbose_name_plural = _("notification subscriptions")
        # One row per (owner, kind, channel): kept by outbound.subscriptions, which replaces an
        # owner's set at once (a unique constraint over nullable columns differs between databases).
        constraints = [
            models.CheckConstraint(condition=models.Q(user__isnull=False) | models.Q(team__isnull=False, channel__isnull=False),
                                   name="subscription_has_owner"),
        ]

    def __str__(self) -> str:
        return f"{self.user or self.team}: {self.kind} → {self.channel or _('e-mail')}"


class Follow(models.Model):
    """A user follows a demand (they commented on it, were assigned it, or pressed Follow): they
    are told about its comments."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", verbose_name=_("user"))
    demand = models.ForeignKey("Demand", on_delete=models.CASCADE, related_name="+", verbose_name=_("demand"))
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["demand", "user"], name="follow_unique")]
        verbose_name = _("follower")
        verbose_name_plural = _("followers")

    def __str__(self) -> str:
        return f"{self.user} follows #{self.demand_id}"


class OutboundMessage(models.Model):
    """The outbox: one message to one route (a user's e-mail, or a channel), written in the
    transaction that saved its notification. QUEUED rows wait for flood control (outbound.digest),
    which releases them (PENDING, sent by demands.outbox.drain) or folds them into one digest row."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        PENDING = "pending", _("Pending")
        SENDING = "sending", _("Sending")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Gave up")
        DIGESTED = "digested", _("In a digest")

    route = models.CharField(_("route"), max_length=64)  # "email:<user id>" or "channel:<id>": flood control's key
    kind = models.CharField(_("kind"), max_length=16)  # a Notification.Kind, "rule" or "digest"
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+",
                             verbose_name=_("recipient"))
    channel = models.ForeignKey(OutboundChannel, null=True, blank=True, on_delete=models.CASCADE, related_name="messages",
                                verbose_name=_("channel"))
    target = models.CharField(_("to"), max_length=1000)
    language = models.CharField(_("language"), max_length=16, blank=True)
    demand = models.ForeignKey("Demand", null=True, blank=True, on_delete=models.CASCADE, related_name="+", db_constraint=False,
                               verbose_name=_("demand"))
    notification = models.ForeignKey("Notification", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                     db_constraint=False, verbose_name=_("notification"))
    digest = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="folded",
                               verbose_name=_("digest"))
    summary = models.JSONField(_("summary"), default=dict, blank=True)  # a digest's counts; the title sent
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt at"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    response_status = models.IntegerField(_("HTTP status"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    released_at = models.DateTimeField(_("released at"), null=True, blank=True)  # took one of the window's slots
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = _("outgoing notification")
        verbose_name_plural = _("outgoing notifications")
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="outbound_due"),
            models.Index(fields=["route", "status"], name="outbound_route_status"),
            models.Index(fields=["route", "released_at"], name="outbound_route_released",
                         condition=models.Q(released_at__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.kind} to {self.route}: {self.status}"
