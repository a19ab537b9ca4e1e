"""What the monitoring page's panels and the header summary show: built here, rendered by the
pages (views.py) and by the monitor's live ticks (monitor.py), which must not import the pages."""

from __future__ import annotations

from django.conf import settings
from django.utils.functional import lazy

from .amqp import amqp_overview
from .cluster import cluster_overview
from .heartbeat import consumer_states
from .lag import lag_overview
from .metrics import backlog_matrix, drain_text, latency_quantiles, latest_backlog, seconds_text, summary, top_flows, window_start
from .models import Alert, AlertRule, LatencyBucket


def summary_context(*, now) -> dict:
    """The header summary, with the verdict (verdict.py) that the page's banner shows too."""
    return {"summary": summary(now=now)}


def panels_context(*, now) -> dict:
    ingest = latency_quantiles(metric=LatencyBucket.Metric.INGEST, start=window_start(now, 5))
    first_action = latency_quantiles(metric=LatencyBucket.Metric.FIRST_ACTION, start=window_start(now, 60))
    lag = lag_overview(group=settings.KAFKA_CONSUMER_GROUP, now=now)
    return {
        "now": now,
        "lag": lag,
        "cluster": cluster_overview(now=now),
        "amqp": amqp_overview(now=now),
        "group": settings.KAFKA_CONSUMER_GROUP,
        "consumers": consumer_states(now=now),
        "backlog": backlog_matrix(latest_backlog(now=now)),
        "flows": top_flows(now=now, minutes=60),
        "open_alerts": list(Alert.objects.filter(resolved_at__isnull=True).order_by("-id")[:20]),
        "drain_text": lazy(drain_text, str)(lag),  # words: in the language each rendering is in
        "ingest": {"p50": seconds_text(ingest[0]), "p95": seconds_text(ingest[1]), "count": ingest[2]},
        "first_action": {
            "p50": seconds_text(first_action[0]), "p95": seconds_text(first_action[1]), "count": first_action[2]
        },
        "rules_enabled": AlertRule.objects.filter(enabled=True).exists(),
    }
