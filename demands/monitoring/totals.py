"""The model behind /metrics' monotonic counters: per-minute flow buckets folded in when pruned.
Imported at the bottom of monitoring/models.py (part of the `demands` app); see counters.py."""

from django.db import models
from django.utils.translation import gettext_lazy as _

__all__ = ["FlowTotal"]


class FlowTotal(models.Model):
    """Everything of one kind, type and source counted in flow buckets that were pruned since."""

    kind = models.CharField(_("kind"), max_length=16)
    type = models.CharField(_("type"), max_length=64, blank=True)
    source = models.CharField(_("source"), max_length=64, blank=True)
    count = models.BigIntegerField(_("count"), default=0)

    class Meta:
        ordering = ["kind", "type", "source"]
        verbose_name = _("pruned flow total")
        verbose_name_plural = _("pruned flow totals")
        constraints = [models.UniqueConstraint(fields=["kind", "type", "source"], name="flowtotal_unique_key")]

    def __str__(self) -> str:
        return f"{self.kind} {self.type}/{self.source}: {self.count}"
