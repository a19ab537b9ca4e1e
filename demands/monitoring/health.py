"""Liveness and readiness checks behind /healthz and /readyz (for load balancers and orchestrators)."""

from __future__ import annotations

import logging
import threading

from django.db import connection

logger = logging.getLogger(__name__)
_admin = None
_admin_lock = threading.Lock()


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
    """Ask the cluster for its metadata; one admin client per process (each one holds connections)."""
    global _admin
    try:
        with _admin_lock:
            if _admin is None:
                from confluent_kafka.admin import AdminClient

                from demands.kafka import client_config

                _admin = AdminClient(client_config())
            admin = _admin
        metadata = admin.list_topics(timeout=timeout)
        if not metadata.brokers:
            return False, "no brokers in cluster metadata"
    except Exception as exc:
        logger.warning("readiness: kafka unavailable: %r", exc)
        return False, f"{type(exc).__name__}: {exc}"[:300]
    return True, "ok"
