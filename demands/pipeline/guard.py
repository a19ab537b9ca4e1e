"""The poison-pill guard: stop the consumer when too much of the recent stream is rejected.

When more than `max_ratio` of the last `window` records were rejected, the batch that crossed
the line is rolled back — `check()` raises RejectRatioExceeded inside the batch's transaction,
so nothing of it is stored, dead-lettered or committed — and the loop stops without retrying: a
broken release or schema change stops the consumer instead of dead-lettering the whole stream.
Fix, restart, and Kafka re-delivers from the last commit.

The window is judged only once it holds `window` records, so a few bad messages at start never
stop the consumer. It is seeded at start from what the database last stored (demands and open
rejections), so a supervisor restarting a broken consumer does not get a fresh allowance each
time; and only a batch that itself has rejections can trip the guard, so a fixed consumer is
never stopped by that history. A batch's outcomes join the window once the batch is committed.
"""

from __future__ import annotations

import logging
from collections import Counter, deque

from ..models import Demand, RejectedMessage
from .parse import IncomingMessage
from .persist import BatchResult
from .retry import ConsumerFailed

logger = logging.getLogger(__name__)


class RejectRatioExceeded(ConsumerFailed):
    """Too many recent records rejected: probably broken code or schema, not bad input. Not retried."""


class RejectRatioGuard:
    def __init__(self, *, max_ratio: float, window: int):
        self.max_ratio = max_ratio
        self.window = window
        self._recent: deque[bool] = deque(maxlen=max(window, 1))  # True: rejected, oldest first

    @property
    def enabled(self) -> bool:
        return self.window >= 1 and self.max_ratio < 1

    def seed(self) -> None:
        """Start the window from the last outcomes the database holds, oldest first."""
        if not self.enabled:
            return
        try:
            demands = Demand.objects.order_by("-id").values_list("received_at", flat=True)[: self.window]
            rejected = (
                RejectedMessage.objects.filter(status=RejectedMessage.Status.OPEN)
                .order_by("-id").values_list("received_at", flat=True)[: self.window]
            )
            history = sorted([(at, False) for at in demands] + [(at, True) for at in rejected])
        except Exception:  # database down at start: the batch loop retries it; start with no history
            logger.exception("could not read recent outcomes for the reject-ratio guard")
            return
        self._recent.extend(is_rejected for _at, is_rejected in history[-self.window :])

    def check(self, records: list[IncomingMessage], result: BatchResult) -> list[bool]:
        """Raise RejectRatioExceeded (call it inside the batch's transaction) if the window is too
        bad. Returns this batch's outcomes, for `record()` once the batch commits."""
        rejected_ids = {id(record) for record, _reason in result.rejected}
        outcomes = [id(record) in rejected_ids for record in records]
        if not self.enabled:
            return outcomes
        window = [*self._recent, *outcomes][-self.window :]
        rejected = sum(window)
        if any(outcomes) and len(window) == self.window and rejected / len(window) > self.max_ratio:
            reasons = Counter(reason.split(":")[0] for _record, reason in result.rejected).most_common(3)
            raise RejectRatioExceeded(
                f"{rejected} of the last {len(window)} records were rejected ({rejected / len(window):.0%}, limit "
                f"{self.max_ratio:.0%}); stopped before storing or committing this batch so that a code or "
                f"schema error does not dead-letter the stream. Most common reasons in this batch: "
                + "; ".join(f"{reason} (×{count})" for reason, count in reasons)
                + ". Fix the cause and restart (Kafka re-delivers from the last commit), or raise "
                "CONSUMER_MAX_REJECT_RATIO if this share of bad input is expected."
            )
        return outcomes

    def record(self, outcomes: list[bool]) -> None:
        """The outcomes of a committed batch join the window."""
        self._recent.extend(outcomes)
