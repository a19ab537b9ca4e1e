"""One outbox drain for every delivery that leaves the process: alert deliveries (monitoring.notify)
and people's notifications (outbound.dispatch).

An outbox row is written in the transaction that decided to notify, so nothing is lost when the
process dies before sending; `drain` sends what is due. A row is claimed with a compare-and-set
update (status PENDING and the attempts seen → SENDING), so two workers never send the same one;
one a crashed worker left SENDING is retried after STUCK_AFTER. A failed attempt is retried after
`retry_delay(attempts)` and given up (FAILED) after `max_attempts`. Staff read `last_error`: the
webhook module's generic texts, never an exception's detail (that goes to the log).

The model needs: status (pending/sending/sent/failed), attempts, next_attempt_at, last_error,
response_status, sent_at.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils.translation import gettext_noop

from .monitoring.webhooks import WebhookError

logger = logging.getLogger(__name__)
SEND_FAILED = gettext_noop("Sending failed (details in the server log)")  # translated where shown
STUCK_AFTER = timedelta(minutes=10)
PENDING, SENDING, SENT, FAILED = "pending", "sending", "sent", "failed"


@dataclass(slots=True)
class DeliveryRun:
    sent: int = 0
    failed: int = 0  # attempts that failed (retried later or given up)
    given_up: int = 0


def drain(
    *, model, now: datetime, send: Callable[[object, datetime], int | None], max_attempts: int,
    retry_delay: Callable[[int], timedelta], limit: int = 50, select_related: tuple[str, ...] = (),
) -> DeliveryRun:
    """Send up to `limit` due rows of `model` with `send(row, now)` (returns an HTTP status or None)."""
    run = DeliveryRun()
    model.objects.filter(status=SENDING, next_attempt_at__lt=now - STUCK_AFTER).update(status=PENDING)
    due = list(
        model.objects.filter(status=PENDING, next_attempt_at__lte=now)
        .select_related(*select_related).order_by("next_attempt_at", "id")[:limit]
    )
    for delivery in due:
        claimed = model.objects.filter(pk=delivery.pk, status=PENDING, attempts=delivery.attempts).update(
            status=SENDING, next_attempt_at=now
        )
        if not claimed:
            continue  # another worker took it
        delivery.attempts += 1
        try:
            delivery.response_status = send(delivery, now)
        except Exception as exc:
            run.failed += 1
            if isinstance(exc, WebhookError):
                delivery.last_error = str(exc)[:2000]
            else:
                logger.warning("%s failed: %r", delivery, exc)
                delivery.last_error = SEND_FAILED
            delivery.response_status = getattr(exc, "status", None)
            if delivery.attempts >= max_attempts:
                delivery.status = FAILED
                delivery.next_attempt_at = None
                run.given_up += 1
                logger.warning("giving up %s after %d attempts: %s", delivery, delivery.attempts, exc)
            else:
                delivery.status = PENDING
                delivery.next_attempt_at = now + retry_delay(delivery.attempts)
        else:
            run.sent += 1
            delivery.status = SENT
            delivery.sent_at = now
            delivery.next_attempt_at = None
            delivery.last_error = ""
        delivery.save(update_fields=["attempts", "status", "next_attempt_at", "last_error", "response_status", "sent_at"])
    return run
