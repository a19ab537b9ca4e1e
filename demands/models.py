"""Demands as stored: one row per (source, id), with where it came from in Kafka."""

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Status(models.TextChoices):
    NEW = "new", _("New")
    TRIAGED = "triaged", _("Triaged")
    IN_PROGRESS = "in_progress", _("In progress")
    RESOLVED = "resolved", _("Resolved")
    REJECTED = "rejected", _("Rejected")
    DUPLICATE = "duplicate", _("Duplicate")


class Priority(models.TextChoices):
    URGENT = "urgent", _("Urgent")
    HIGH = "high", _("High")
    NORMAL = "normal", _("Normal")
    LOW = "low", _("Low")


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
    # Where it came from: the start of its traceable history.
    kafka_topic = models.CharField(_("Kafka topic"), max_length=249, blank=True)
    kafka_partition = models.IntegerField(_("Kafka partition"), null=True, blank=True)
    kafka_offset = models.BigIntegerField(_("Kafka offset"), null=True, blank=True)
    kafka_timestamp = models.DateTimeField(_("Kafka timestamp"), null=True, blank=True)
    received_at = models.DateTimeField(_("stored at"), default=timezone.now)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["source", "message_id"], name="demand_unique_source_message_id"),
        ]
        indexes = [
            # Newest-first lists filtered by one field: keyset pagination walks these backwards.
            models.Index(fields=["status", "-id"], name="demand_status_id"),
            models.Index(fields=["type", "-id"], name="demand_type_id"),
            models.Index(fields=["source", "-id"], name="demand_source_id"),
        ]

    def __str__(self) -> str:
        return f"{self.source}/{self.message_id}"


class RejectedMessage(models.Model):
    """A message that could not become a demand: kept with the reason, never dropped."""

    topic = models.CharField(_("topic"), max_length=249)
    partition = models.IntegerField(_("partition"), null=True, blank=True)
    offset = models.BigIntegerField(_("offset"), null=True, blank=True)
    kafka_timestamp = models.DateTimeField(_("Kafka timestamp"), null=True, blank=True)
    key = models.TextField(_("key"), blank=True)
    payload = models.BinaryField(_("payload"), blank=True)
    reason = models.TextField(_("reason"))
    received_at = models.DateTimeField(_("received at"), default=timezone.now)

    class Meta:
        ordering = ["-id"]
        constraints = [
            # A redelivered bad message is recorded once.
            models.UniqueConstraint(
                fields=["topic", "partition", "offset"],
                condition=models.Q(offset__isnull=False),
                name="rejected_unique_kafka_position",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}: {self.reason}"

    @property
    def payload_text(self) -> str:
        """The payload for display: undecodable bytes shown as U+FFFD, never raised on."""
        return bytes(self.payload or b"").decode("utf-8", errors="replace")
