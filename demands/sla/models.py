"""SLA policies and escalation steps as stored, and the record of each step that fired (or was skipped).

Star-imported at the bottom of demands/models.py, so the app label stays `demands`.
"""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .business_time import BusinessCalendar, CalendarError

__all__ = ["SlaPolicy", "EscalationStep", "EscalationFiring", "SlaRetime"]

_PRIORITIES = ("urgent", "high", "normal", "low")  # demands.models.Priority's values (no import cycle)


def _csv(value: str) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


class SlaPolicy(models.Model):
    """Targets for the demands it matches: the first (enabled, lowest order) policy matching a
    demand's priority — and type, source and team when given — is the demand's policy."""

    name = models.CharField(_("name"), max_length=100)
    order = models.PositiveIntegerField(_("order"), default=100, help_text=_("Lower is tried first."))
    enabled = models.BooleanField(_("enabled"), default=True)
    match_priorities = models.CharField(
        _("priorities"), max_length=100, help_text=_("Comma-separated: urgent, high, normal, low.")
    )
    match_types = models.CharField(_("types"), max_length=500, blank=True, help_text=_("Comma-separated; empty matches any."))
    match_sources = models.CharField(_("sources"), max_length=500, blank=True, help_text=_("Comma-separated; empty matches any."))
    match_team = models.ForeignKey(
        "demands.Team", null=True, blank=True, on_delete=models.CASCADE, related_name="+", verbose_name=_("team"),
        help_text=_("Empty matches any team, or none."),
    )
    respond_minutes = models.PositiveIntegerField(
        _("first response within (minutes)"), null=True, blank=True,
        help_text=_("A person's first triage action or comment. Empty: no target."),
    )
    resolve_minutes = models.PositiveIntegerField(_("resolve within (minutes)"), null=True, blank=True)
    at_risk_percent = models.PositiveSmallIntegerField(
        _("at risk after (% of the target)"), default=80, help_text=_("The assignee is reminded then.")
    )
    time_zone = models.CharField(_("time zone"), max_length=64, blank=True, help_text=_("For business hours, e.g. Asia/Shanghai."))
    business_hours = models.CharField(
        _("business hours"), max_length=500, blank=True,
        help_text=_("Like “mon-fri 09:00-18:00; sat 10:00-14:00”. Empty: around the clock."),
    )
    holidays = models.TextField(_("holidays"), blank=True, help_text=_("Dates like 2026-10-01, separated by commas or lines."))
    archive_after_days = models.PositiveIntegerField(
        _("archive closed demands after (days)"), null=True, blank=True,
        help_text=_("Resolved, rejected and duplicate demands of this policy untouched this long are archived. Empty: the global setting (ARCHIVE_AFTER_DAYS); 0: never."),
    )
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        ordering = ["order", "id"]
        verbose_name = _("SLA policy")
        verbose_name_plural = _("SLA policies")

    def __str__(self) -> str:
        return self.name

    @property
    def priorities(self) -> list[str]:
        return _csv(self.match_priorities)

    @property
    def types(self) -> list[str]:
        return _csv(self.match_types)

    @property
    def sources(self) -> list[str]:
        return _csv(self.match_sources)

    def calendar(self) -> BusinessCalendar:
        return BusinessCalendar.from_text(time_zone=self.time_zone, weekly=self.business_hours, holidays=self.holidays)

    def clean(self):
        errors = {}
        unknown = [p for p in self.priorities if p not in _PRIORITIES]
        if not self.priorities or unknown:
            errors["match_priorities"] = _("Name one or more of: urgent, high, normal, low.")
        if not self.respond_minutes and not self.resolve_minutes:
            errors["respond_minutes"] = _("Set a first-response or a resolution target (or both).")
        if not 1 <= (self.at_risk_percent or 0) <= 100:
            errors["at_risk_percent"] = _("A percentage from 1 to 100.")
        try:
            self.calendar()
        except CalendarError as exc:
            errors["business_hours"] = str(exc)
        if errors:
            raise ValidationError(errors)


class EscalationStep(models.Model):
    """After N minutes of business time in a condition, act once: tell, raise the priority, reassign."""

    class Condition(models.TextChoices):
        NOT_ACKNOWLEDGED = "not_acknowledged", _("no first response yet")
        NOT_RESOLVED = "not_resolved", _("not resolved")

    policy = models.ForeignKey(SlaPolicy, on_delete=models.CASCADE, related_name="steps", verbose_name=_("SLA policy"))
    after_minutes = models.PositiveIntegerField(_("after (minutes)"), help_text=_("Business time since the demand arrived."))
    condition = models.CharField(_("while"), max_length=20, choices=Condition.choices, default=Condition.NOT_ACKNOWLEDGED)
    notify_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        verbose_name=_("notify person"), limit_choices_to={"is_staff": True, "is_active": True},
    )
    notify_team = models.ForeignKey(
        "demands.Team", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", verbose_name=_("notify team")
    )
    raise_priority = models.CharField(
        _("raise priority to"), max_length=16, blank=True, choices=[(p, p) for p in _PRIORITIES],
        help_text=_("Only ever raises: a demand already as urgent is left as it is."),
    )
    assign_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        verbose_name=_("reassign to person"), limit_choices_to={"is_staff": True, "is_active": True},
    )
    assign_team = models.ForeignKey(
        "demands.Team", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", verbose_name=_("reassign to team")
    )

    class Meta:
        ordering = ["policy", "after_minutes", "id"]
        verbose_name = _("escalation step")
        verbose_name_plural = _("escalation steps")

    def __str__(self) -> str:
        return f"{self.policy_id} +{self.after_minutes} min"

    def clean(self):
        if not (self.notify_user_id or self.notify_team_id or self.raise_priority or self.assign_user_id or self.assign_team_id):
            raise ValidationError(_("Give the step something to do: notify, raise the priority or reassign."))


class EscalationFiring(models.Model):
    """A step done for a demand, once: the unique (demand, step) row is the claim. Two timers
    reaching the same step insert the same row; the second insert fails and that timer does nothing."""

    class Outcome(models.TextChoices):
        FIRED = "fired", _("fired")
        SKIPPED = "skipped", _("skipped (a later step was due too)")

    demand = models.ForeignKey("demands.Demand", on_delete=models.CASCADE, related_name="+", db_index=False,
                               verbose_name=_("demand"))
    step = models.ForeignKey(EscalationStep, on_delete=models.CASCADE, related_name="firings", verbose_name=_("step"))
    outcome = models.CharField(_("outcome"), max_length=16, choices=Outcome.choices)
    at = models.DateTimeField(_("at"), default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["demand", "step"], name="escalation_once_per_demand_step")]
        verbose_name = _("escalation firing")
        verbose_name_plural = _("escalation firings")


class SlaRetime(models.Model):
    """One row: a policy changed at `requested_at`; the tick re-times open demands after `after_id`
    in bounded batches until `done_for` equals `requested_at`."""

    requested_at = models.DateTimeField(null=True)
    done_for = models.DateTimeField(null=True)
    after_id = models.BigIntegerField(default=0)
