"""The monitoring page's socket: the page's one socket (demands/consumers.py), with full ticks."""

from __future__ import annotations

from demands.consumers import CLOSE_FORBIDDEN, DemandStreamConsumer

__all__ = ["CLOSE_FORBIDDEN", "MonitoringConsumer"]


class MonitoringConsumer(DemandStreamConsumer):
    """/ws/monitoring/: the header summary, alert toasts and notifications every page gets, plus
    the panels and chart series of each monitor tick. Frames are JSON ({"kind": "tick"|"alert", …})
    but for notifications (HTML, as on every page)."""

    page = "monitoring"
