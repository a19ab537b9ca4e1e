"""Models of what the monitor samples from the broker each tick: lag per partition and the
cluster's state. Imported at the bottom of monitoring/models.py (part of the `demands` app)."""

from django.db import models
from django.utils.translation import gettext_lazy as _

__all__ = ["LagSample", "ClusterSample"]


class LagSample(models.Model):
    """A consumer group's committed offset and the partition's watermarks, as last sampled in that minute."""

    minute = models.DateTimeField(_("minute"))
    sampled_at = models.DateTimeField(_("sampled at"))
    group = models.CharField(_("consumer group"), max_length=255)
    topic = models.CharField(_("topic"), max_length=249)
    partition = models.IntegerField(_("partition"))
    committed = models.BigIntegerField(_("committed offset"), null=True, blank=True, help_text=_("Empty: the group never committed."))
    low = models.BigIntegerField(_("low watermark"))
    high = models.BigIntegerField(_("high watermark"))
    lag = models.BigIntegerField(_("lag"))

    class Meta:
        ordering = ["-minute", "group", "topic", "partition"]
        verbose_name = _("lag sample")
        verbose_name_plural = _("lag samples")
        constraints = [
            models.UniqueConstraint(fields=["minute", "group", "topic", "partition"], name="lagsample_unique_key"),
        ]
        indexes = [models.Index(fields=["group", "-sampled_at"], name="lagsample_group_sampled")]


class ClusterSample(models.Model):
    """The Kafka cluster as the monitor last saw it: one row per minute (a later sample replaces it)."""

    minute = models.DateTimeField(_("minute"), unique=True)
    sampled_at = models.DateTimeField(_("sampled at"))
    reachable = models.BooleanField(_("reachable"), default=True)
    error = models.TextField(_("error"), blank=True)
    brokers = models.JSONField(_("brokers"), default=list, help_text=_("[[node id, host:port], …] of the brokers up."))
    controller = models.IntegerField(_("controller"), null=True, blank=True)
    partitions = models.IntegerField(_("partitions"), default=0)
    under_replicated = models.JSONField(_("under-replicated partitions"), default=list)
    offline = models.JSONField(_("offline partitions"), default=list)
    max_replicas = models.IntegerField(_("largest replica set"), default=0)

    class Meta:
        ordering = ["-minute"]
        verbose_name = _("cluster sample")
        verbose_name_plural = _("cluster samples")
