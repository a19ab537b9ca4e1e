"""What the consume loop has done: totals since it started, and a throughput line now and then.

Every `interval` seconds (30 by default) the loop logs the demands stored per second, the
rejections and the duplicates since the last such line; when it closes, its totals.
"""

from __future__ import annotations

import logging
import time

from .persist import BatchResult

logger = logging.getLogger(__name__)


class LoopStats:
    def __init__(self, *, interval: float = 30.0):
        self.interval = interval
        self.totals = {"batches": 0, "created": 0, "duplicates": 0, "rejected": 0}
        self._window = {"created": 0, "rejected": 0, "duplicates": 0}
        self._window_start = time.monotonic()

    def add(self, result: BatchResult) -> None:
        """A stored and committed batch."""
        created, rejected = len(result.created), len(result.rejected)
        self.totals["batches"] += 1
        self.totals["created"] += created
        self.totals["duplicates"] += result.duplicates
        self.totals["rejected"] += rejected
        self._window["created"] += created
        self._window["rejected"] += rejected
        self._window["duplicates"] += result.duplicates

    def start_window(self) -> None:
        self._window = dict.fromkeys(self._window, 0)
        self._window_start = time.monotonic()

    def log_throughput_if_due(self) -> None:
        now = time.monotonic()
        elapsed = now - self._window_start
        if elapsed < self.interval:
            return
        window = self._window
        logger.info(
            "throughput: %.1f demands/s stored, %d rejected, %d duplicates in the last %.0fs",
            window["created"] / elapsed, window["rejected"], window["duplicates"], elapsed,
        )
        self.start_window()

    def log_totals(self) -> None:
        logger.info(
            "consumer closed: %(batches)d batches, %(created)d demands stored, %(duplicates)d duplicates, "
            "%(rejected)d rejected",
            self.totals,
        )
