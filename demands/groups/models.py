"""Models of group triage: a group's history (`GroupEvent`) and its arrivals per hour
(`GroupHour`, the sparklines), counted at ingest in one statement per batch.

Imported at the bottom of demands/models.py so Django sees them as part of the `demands` app.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

__all__ = ["GroupEvent", "GroupHour"]


class GroupEvent(models.Model):
    """One entry of a group's history: a triage change by a person, a merge or unmerge, or a
    regression (a new member of a resolved group; actor None = the system)."""

    class Kind(models.TextChoices):
        STATUS = "status", _("Status changed")
        PRIORITY = "priority", _("Priority changed")
        ASSIGNMENT = "assignment", _("Assignment changed")
        TEAM = "team", _("Team changed")
        MERGE = "merge", _("Merged")
        UNMERGE = "unmerge", _("Unmerged")
        REGRESSION = "regression", _("Regression")

    group = models.ForeignKey("demands.DemandGroup", on_delete=models.CASCADE, related_name="events", verbose_name=_("group"))
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", verbose_name=_("actor"),
        db_index=False,
    )
    old_value = models.CharField(_("old value"), max_length=200, blank=True)
    new_value = models.CharField(_("new value"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("at"), default=timezone.now)

    class Meta:
        ordering = ["id"]
        verbose_name = _("group history entry")
        verbose_name_plural = _("group history")

    def __str__(self) -> str:
        return f"{self.group_id} {self.kind}: {self.old_value} → {self.new_value}"


class GroupHour(models.Model):
    """How many members a group gained in one hour. Ingest adds to it (`grouping.count_group_hours`);
    merge and unmerge recount it from the members; rows older than HOURS_KEPT are pruned."""

    # No constraint: written with the batch that creates the group; deleted with it through CASCADE.
    group = models.ForeignKey(
        "demands.DemandGroup", on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False,
    )
    hour = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["group", "hour"], name="grouphour_unique_group_hour")]

    def __str__(self) -> str:
        return f"{self.group_id} {self.hour:%Y-%m-%d %H}: {self.count}"
