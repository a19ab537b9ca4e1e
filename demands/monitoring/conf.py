"""Monitoring settings: environment variables with embedded defaults, overridable in Django settings.

Kept here rather than in settings.py so that this package stays self-contained; a Django setting
of the same name (e.g. MONITORING_TICK_SECONDS in a test's `settings` fixture) wins.
"""

from __future__ import annotations

import os

from django.conf import settings

_DEFAULTS = {
    # How often the monitor rolls up history, samples lag and evaluates alert rules.
    "MONITORING_TICK_SECONDS": float(os.environ.get("MONITORING_TICK_SECONDS", "10")),
    # A consume loop writes its heartbeat at most this often …
    "MONITORING_HEARTBEAT_SECONDS": float(os.environ.get("MONITORING_HEARTBEAT_SECONDS", "5")),
    # … and is shown as dead when it has not written one for this long.
    "MONITORING_CONSUMER_DEAD_AFTER": float(os.environ.get("MONITORING_CONSUMER_DEAD_AFTER", "30")),
    # Events newer than this are left for the next roll-up, so a transaction that committed a
    # little after a later one is still counted (ids are allocated before commit).
    "MONITORING_ROLLUP_SETTLE_SECONDS": float(os.environ.get("MONITORING_ROLLUP_SETTLE_SECONDS", "5")),
    # Window of lag samples from which consume/produce rates (and time to drain) are estimated.
    "MONITORING_RATE_WINDOW_MINUTES": int(os.environ.get("MONITORING_RATE_WINDOW_MINUTES", "5")),
    # Lag samples older than this are not "current" (the monitor or the broker is down).
    "MONITORING_LAG_STALE_SECONDS": float(os.environ.get("MONITORING_LAG_STALE_SECONDS", "120")),
    "MONITORING_RETENTION_DAYS": int(os.environ.get("MONITORING_RETENTION_DAYS", "30")),
    "MONITORING_LAG_RETENTION_DAYS": int(os.environ.get("MONITORING_LAG_RETENTION_DAYS", "7")),
    "MONITORING_HEARTBEAT_RETENTION_HOURS": int(os.environ.get("MONITORING_HEARTBEAT_RETENTION_HOURS", "24")),
    # A dead consumer whose partitions live consumers own again is "replaced"; its row goes after this.
    "MONITORING_REPLACED_RETENTION_HOURS": float(os.environ.get("MONITORING_REPLACED_RETENTION_HOURS", "1")),
    # Webhooks: the HMAC key used when a rule names none, timeout, and the retry schedule
    # (base · 2^(attempt-1), capped; a delivery is given up after max attempts).
    "MONITORING_WEBHOOK_SECRET": os.environ.get("MONITORING_WEBHOOK_SECRET", ""),
    "MONITORING_WEBHOOK_TIMEOUT": float(os.environ.get("MONITORING_WEBHOOK_TIMEOUT", "5")),
    "MONITORING_DELIVERY_MAX_ATTEMPTS": int(os.environ.get("MONITORING_DELIVERY_MAX_ATTEMPTS", "6")),
    "MONITORING_RETRY_BASE_SECONDS": float(os.environ.get("MONITORING_RETRY_BASE_SECONDS", "15")),
    "MONITORING_RETRY_MAX_SECONDS": float(os.environ.get("MONITORING_RETRY_MAX_SECONDS", "3600")),
    # Absolute base URL for links in webhooks and e-mails, e.g. https://umsg.example.com
    "MONITORING_BASE_URL": os.environ.get("MONITORING_BASE_URL", "").rstrip("/"),
    "MONITORING_EMAIL_FROM": os.environ.get("MONITORING_EMAIL_FROM", ""),
    # If set, /metrics requires `Authorization: Bearer <token>`; unset, it is open like most exporters.
    "MONITORING_METRICS_TOKEN": os.environ.get("MONITORING_METRICS_TOKEN", ""),
    # The verdict (verdict.py) calls a rejected share above this over 5 minutes degraded (with at least N messages).
    "MONITORING_VERDICT_REJECT_RATIO": float(os.environ.get("MONITORING_VERDICT_REJECT_RATIO", "0.2")),
    "MONITORING_VERDICT_MIN_MESSAGES": int(os.environ.get("MONITORING_VERDICT_MIN_MESSAGES", "20")),
    # Most alerts one rule may hold open at once (e.g. urgent demands unassigned): no storms.
    "MONITORING_MAX_ALERTS_PER_RULE": int(os.environ.get("MONITORING_MAX_ALERTS_PER_RULE", "100")),
}


def get(name: str):
    return getattr(settings, name, _DEFAULTS[name])
