"""Models of RabbitMQ sources as monitoring sees them: each bridge process's heartbeat, and each
queue's depth and consumers sampled by the monitor once a minute. Imported at the bottom of
demands/models.py (part of the `demands` app)."""

from django.db import models
from django.utils.translation import gettext_lazy as _

__all__ = ["BridgeHeartbeat", "AmqpQueueSample"]


class BridgeHeartbeat(models.Model):
    """One bridge process (`bridge_amqp`, or the one `run_dashboard --amqp` embeds): written every
    few seconds while it runs, stamped when it stops. Several bridges on one queue each have one."""

    name = models.CharField(_("name"), max_length=200, unique=True)
    kind = models.CharField(_("source kind"), max_length=16, default="amqp")
    hostname = models.CharField(_("host"), max_length=200)
    pid = models.IntegerField(_("process id"))
    queues = models.CharField(_("queues"), max_length=1000)
    started_at = models.DateTimeField(_("started at"))
    last_seen_at = models.DateTimeField(_("last heartbeat"), db_index=True)
    stopped_at = models.DateTimeField(_("stopped at"), null=True, blank=True)
    source_state = models.CharField(_("source state"), max_length=16, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    counters = models.JSONField(
        _("counters"), default=dict, blank=True,
        help_text=_("Per queue: forwarded (confirmed by Kafka), acked, held (received, not yet acked), rate (messages/s)."),
    )

    class Meta:
        ordering = ["-last_seen_at"]
        verbose_name = _("bridge heartbeat")
        verbose_name_plural = _("bridge heartbeats")

    def __str__(self) -> str:
        return self.name

    def queue_list(self) -> list[str]:
        return [queue for queue in self.queues.split(",") if queue]


class AmqpQueueSample(models.Model):
    """A queue as the monitor last saw it in that minute (a later sample replaces it); or, with
    reachable False, why the broker could not be asked."""

    minute = models.DateTimeField(_("minute"))
    sampled_at = models.DateTimeField(_("sampled at"))
    queue = models.CharField(_("queue"), max_length=255)
    reachable = models.BooleanField(_("reachable"), default=True)
    error = models.TextField(_("error"), blank=True)
    ready = models.BigIntegerField(_("messages ready"), null=True, blank=True)
    unacked = models.BigIntegerField(_("messages unacked"), null=True, blank=True)
    depth = models.BigIntegerField(_("depth"), null=True, blank=True, help_text=_("Ready + unacked."))
    consumers = models.IntegerField(_("consumers"), null=True, blank=True)
    rate = models.FloatField(_("bridged per second"), null=True, blank=True)
    bridged = models.BigIntegerField(_("bridged by live bridges"), default=0)

    class Meta:
        ordering = ["-minute", "queue"]
        verbose_name = _("AMQP queue sample")
        verbose_name_plural = _("AMQP queue samples")
        constraints = [models.UniqueConstraint(fields=["minute", "queue"], name="amqpqueuesample_unique_key")]
        indexes = [models.Index(fields=["queue", "-sampled_at"], name="amqpqueuesample_queue_sampled")]
