"""Liveness and readiness checks behind /healthz and /readyz (for load balancers and orchestrators).

The broker check asks the probe child (`probe.shared_probe`) for the cluster's metadata, so a
librdkafka failure on that path cannot take the web process — its pages and websockets — down.
"""

from __future__ import annotations

import logging

from django.db import connection

from demands.kafka import broker_outage

from .probe import ProbeFailed, shared_probe

logger = logging.getLogger(__name__)


def database_reachable() -> tuple[bool, str]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        logger.warning("readiness: database unavailable: %r", exc)
        return False, f"{type(exc).__name__}: {exc}"[:300]
    return True, "ok"


def public_checks(*, database_ok: bool, broker_ok: bool) -> dict[str, str]:
    """What anonymous callers (load balancers) are told: which check failed, not why."""
    return {"database": "ok" if database_ok else "unavailable", "broker": "ok" if broker_ok else "unavailable"}


def broker_reachable(timeout: float = 3.0) -> tuple[bool, str]:
    """Ask the cluster for its metadata (through the probe child, bounded by `timeout`)."""
    try:
        answer = shared_probe().ask(timeout=timeout)
    except ProbeFailed as exc:
        logger.warning("readiness: kafka unavailable: %s", exc)
        return False, str(exc)[:300]
    if not answer["cluster"]["brokers"]:
        return False, "no brokers in cluster metadata"
    broker_outage.ok()
    return True, "ok"
