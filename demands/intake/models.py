"""Models of intake: per-source API keys for HTTP ingest (stored hashed, revocable, each with its
own rate limit) and the rejected messages of the dead-letter work queue.

Imported at the bottom of models.py so Django sees them as part of the `demands` app.
"""

from django.conf import settings
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..schema import MAX_NAME_CHARS, NAME_PATTERN

__all__ = ["RejectedMessage", "SourceApiKey"]


class SourceApiKey(models.Model):
    """A key that lets one source post demands over HTTP, and only as that source.

    The plain key (`umk_<prefix>_<secret>`) is shown once, when it is made; the database keeps
    the prefix (to find the row) and the SHA-256 of the whole key. Why not a password hasher: the
    secret is 256 random bits, so a leaked hash cannot be reversed by guessing however fast the
    hash is, and a deliberately slow hasher (PBKDF2, hundreds of milliseconds) would make every
    ingest request expensive — a denial-of-service lever — for no gain. Passwords need slow
    hashes because people choose guessable ones; these are never chosen by people.
    """

    name = models.CharField(_("name"), max_length=100, help_text=_("Who uses it, e.g. “shop front-end feedback widget”."))
    source = models.CharField(
        _("source"), max_length=MAX_NAME_CHARS, db_index=True,
        validators=[RegexValidator(NAME_PATTERN, _("Letters, digits and . _ - : / only (as in messages)."))],
        help_text=_("Demands posted with this key must have this source (it is filled in when absent)."),
    )
    prefix = models.CharField(_("key prefix"), max_length=16, unique=True, editable=False)
    key_hash = models.CharField(_("key hash (SHA-256)"), max_length=64, editable=False)
    allowed_origins = models.TextField(
        _("allowed browser origins"), blank=True,
        help_text=_(
            "One per line, e.g. https://shop.example.com — web pages there may call the ingest endpoint "
            "with this key (CORS). “*” allows any origin. Server-to-server calls send no origin and are not affected."
        ),
    )
    rate_per_minute = models.PositiveIntegerField(
        _("demands per minute"), default=600, validators=[MinValueValidator(1)],
        help_text=_("Sustained rate; each demand in a request takes one token."),
    )
    burst = models.PositiveIntegerField(
        _("burst"), default=100, validators=[MinValueValidator(1)],
        help_text=_("Demands accepted at once after a quiet spell (the bucket's size)."),
    )
    # Token bucket state, changed only by one conditional UPDATE (see keys.rate_limit_take).
    tokens = models.FloatField(_("tokens"), default=0.0, editable=False)
    refilled_at = models.FloatField(_("refilled at"), default=0.0, editable=False, help_text=_("Unix time of the last refill"))
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", verbose_name=_("created by")
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    last_used_at = models.DateTimeField(_("last used at"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", verbose_name=_("revoked by")
    )

    class Meta:
        ordering = ["source", "name"]
        verbose_name = _("source API key")
        verbose_name_plural = _("source API keys")

    def __str__(self) -> str:
        return f"{self.name} ({self.source}, umk_{self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def origins(self) -> list[str]:
        return [line.strip().rstrip("/") for line in self.allowed_origins.replace(",", "\n").splitlines() if line.strip()]


class RejectedMessage(models.Model):
    """A message that could not become a demand: kept with the reason, never dropped."""

    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        REPLAYED = "replayed", _("Replayed")
        DISCARDED = "discarded", _("Discarded")

    topic = models.CharField(_("topic"), max_length=249)
    partition = models.IntegerField(_("partition"), null=True, blank=True)
    offset = models.BigIntegerField(_("offset"), null=True, blank=True)
    kafka_timestamp = models.DateTimeField(_("Kafka timestamp"), null=True, blank=True)
    key = models.TextField(_("key"), blank=True)
    payload = models.BinaryField(_("payload"), blank=True)
    reason = models.TextField(_("reason"))
    received_at = models.DateTimeField(_("received at"), default=timezone.now)
    # The dead-letter work queue (see intake/dlq.py): who handled it, how, and where a replay went.
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.OPEN)
    handled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", verbose_name=_("handled by")
    )
    handled_at = models.DateTimeField(_("handled at"), null=True, blank=True)
    note = models.TextField(_("note"), blank=True)
    replay_payload = models.TextField(_("replayed payload"), blank=True)
    replay_topic = models.CharField(_("replayed to topic"), max_length=249, blank=True)
    replay_partition = models.IntegerField(_("replayed to partition"), null=True, blank=True)
    replay_offset = models.BigIntegerField(_("replayed to offset"), null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["status", "-id"], name="rejected_status_id")]
        verbose_name = _("rejected message")
        verbose_name_plural = _("rejected messages")
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
