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

Scoped by source: each outcome is labelled with the source its Kafka key names (`source:id`, as
every producer of this project keys; unkeyed records share one label). When the rejections in
the window all carry one label while other sources' records in it are fine, that is one source
sending bad input, not broken code: its messages are dead-lettered (the `rejection_ratio` alert
rule, grouped by source, tells people) and the other sources keep flowing. A deployment with one
source, or rejections across several sources, is stopped as before.
"""

from __future__ import annotations

import logging
from collections import Counter, deque

from ..models import Demand, RejectedMessage
from .parse import IncomingMessage
from .persist import BatchResult
from .retry import ConsumerFailed

logger = logging.getLogger(__name__)


UNKEYED = "(unkeyed)"


class RejectRatioExceeded(ConsumerFailed):
    """Too many recent records rejected: probably broken code or schema, not bad input. Not retried."""


class RejectRatioGuard:
    def __init__(self, *, max_ratio: float, window: int):
        self.max_ratio = max_ratio
        self.window = window
        self._recent: deque[tuple[str, bool]] = deque(maxlen=max(window, 1))  # (source label, rejected), oldest first

    @property
    def enabled(self) -> bool:
        return self.window >= 1 and self.max_ratio < 1

    def seed(self) -> None:
        """Start the window from the last outcomes the database holds, oldest first."""
        if not self.enabled:
            return
        try:
            demands = Demand.objects.order_by("-id").values_list("received_at", "source")[: self.window]
            rejected = (
                RejectedMessage.objects.filter(status=RejectedMessage.Status.OPEN)
                .order_by("-id").values_list("received_at", "key")[: self.window]
            )
            history = sorted([(at, source, False) for at, source in demands]
                             + [(at, _label(key.encode()), True) for at, key in rejected])
        except Exception:  # database down at start: the batch loop retries it; start with no history
            logger.exception("could not read recent outcomes for the reject-ratio guard")
            return
        self._recent.extend((label, is_rejected) for _at, label, is_rejected in history[-self.window :])

    def check(self, records: list[IncomingMessage], result: BatchResult) -> list[bool]:
        """Raise RejectRatioExceeded (call it inside the batch's transaction) if the window is too
        bad. Returns this batch's outcomes, for `record()` once the batch commits."""
        rejected_ids = {id(record) for record, _reason in result.rejected}
        outcomes = [(_label(record.key), id(record) in rejected_ids) for record in records]
        if not self.enabled:
            return outcomes
        window = [*self._recent, *outcomes][-self.window :]
        rejected = sum(bad for _label_, bad in window)
        if (any(bad for _label_, bad in outcomes) and len(window) == self.window
                and rejected / len(window) > self.max_ratio and not self._one_source_misbehaving(window)):
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

    @staticmethod
    def _one_source_misbehaving(window: list[tuple[str, bool]]) -> bool:
        """Every rejection in the window from one named source, while other sources' records pass.
        Unkeyed records name no source, so their rejections count against the whole stream."""
        bad_sources = {label for label, bad in window if bad}
        return len(bad_sources) == 1 and UNKEYED not in bad_sources and len({label for label, _bad in window}) > 1

    def record(self, outcomes: list[tuple[str, bool]]) -> None:
        """The outcomes of a committed batch join the window."""
        self._recent.extend(outcomes)


def _label(key: bytes | None) -> str:
    """The source a record's key names (`source:id`), or one label for unkeyed records."""
    if not key or b":" not in key:
        return UNKEYED
    return bytes(key).split(b":", 1)[0][:64].decode("utf-8", errors="replace")
