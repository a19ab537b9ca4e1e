"""Live monitoring: the group every staff page joins, its event types, and the broadcasts.

Every page's socket (demands/consumers.py) is in the group. Each monitor tick renders the header
summary and the monitoring page's panels once and sends them, with the last hour's chart series,
in one message holding two frames: the whole one for the monitoring page, the summary alone for
the others. Alert notifications are one message each. Consumers forward the frames as they are.
"""

from __future__ import annotations

import json

from django.template.loader import render_to_string

MONITORING_GROUP = "monitoring"
EVENT_TICK = "monitoring.tick"  # handled by DemandStreamConsumer.monitoring_tick
EVENT_ALERT = "monitoring.alert"  # … .monitoring_alert


def _send(event: dict) -> None:
    from demands.live import group_send

    group_send(MONITORING_GROUP, event)


def tick_frame(*, summary_html: str, panels_html: str, series: dict) -> str:
    return json.dumps({"kind": "tick", "summary": summary_html, "panels": panels_html, "series": series}, ensure_ascii=False)


def summary_frame(*, summary_html: str) -> str:
    return json.dumps({"kind": "tick", "summary": summary_html}, ensure_ascii=False)


def broadcast_tick(*, summary_html: str, panels_html: str, series: dict) -> None:
    _send({
        "type": EVENT_TICK,
        "frame": tick_frame(summary_html=summary_html, panels_html=panels_html, series=series),
        "summary_frame": summary_frame(summary_html=summary_html),
    })


def alert_frame(alert, event: str) -> str:
    html = render_to_string("monitoring/_toast.html", {"alert": alert, "event": event})
    return json.dumps(
        {"kind": "alert", "event": event, "id": alert.pk, "severity": alert.severity, "title": alert.title, "html": html},
        ensure_ascii=False,
    )


def broadcast_alert(alert, event: str) -> None:
    """Call after the alert's transaction committed."""
    _send({"type": EVENT_ALERT, "frame": alert_frame(alert, event)})
