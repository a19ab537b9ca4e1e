"""Back-off for a batch that failed: the same batch again, later, until the failure budget is spent.

A database or broker error (server restarting, connection lost, a constraint race) fails the
batch before anything is committed, so it can simply be stored again. The delay doubles from
0.5 s up to 30 s, so a recovered database is noticed within 30 s; after `max_failures`
consecutive failures of one batch the loop gives up with ConsumerFailed, the process exits
non-zero, its supervisor restarts it, and Kafka re-delivers from the last commit. The default
budget (CONSUMER_MAX_FAILURES) rides out a database outage of about a minute.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)


class ConsumerFailed(RuntimeError):
    """Too many consecutive failures: the process should exit non-zero and be restarted."""


class RetryBudget:
    """The failures of one batch: each `failed()` returns how long to wait before the next try,
    or raises ConsumerFailed once `max_failures` have happened in a row."""

    def __init__(self, max_failures: int, *, first_delay: float = 0.5, max_delay: float = 30.0):
        self.max_failures = max_failures
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.failures = 0

    def failed(self, exc: BaseException, *, records: int) -> float:
        self.failures += 1
        if self.failures >= self.max_failures:
            raise ConsumerFailed(
                f"batch of {records} records failed {self.failures} times in a row; last error: {exc!r}"
            ) from exc
        delay = min(self.first_delay * 2 ** (self.failures - 1), self.max_delay)
        logger.warning(
            "batch failed (%d/%d), retrying in %.1fs without committing: %r", self.failures, self.max_failures, delay, exc
        )
        return delay


def sleep_unless_stopped(seconds: float, stopping: Callable[[], bool]) -> None:
    """Back-off that a stop request cuts short (the consume loop's and the bridge's). Not
    Event.wait(): that holds the event's lock for a moment, and SIGTERM's handler (stop() →
    Event.set(), same thread) landing in that moment would wait for the lock forever. Short
    sleeps and a lock-free is_set() cannot."""
    deadline = time.monotonic() + seconds
    while not stopping():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        time.sleep(min(remaining, 0.1))
