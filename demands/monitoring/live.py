"""Live monitoring: the group every staff page joins, its event types, and the broadcasts.

Every page's socket (demands/consumers.py) is in the group. Each monitor tick renders the header
summary and the monitoring page's verdict, stat cards and panels once per language read (as
demands/live.py does for demand fragments) and sends them, with the last hour's chart series, in
one message holding two frames per language: the whole one for the monitoring page, the summary
alone for the others. Alert notifications are one message each, also per language. Each socket
forwards the frame in its reader's language.
"""

from __future__ import annotations

import json
from contextlib import nullcontext

from django.template.loader import render_to_string
from django.utils import translation

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


def broadcast_tick(*, summary_html: str | dict[str, str], panels_html: str | dict[str, str], series: dict) -> None:
    """`summary_html` and `panels_html` map each language to its rendering (or are one string):
    the frames go out per language, and each socket sends its reader's (consumers' `_html`)."""
    if isinstance(summary_html, str) and isinstance(panels_html, str):
        frame = tick_frame(summary_html=summary_html, panels_html=panels_html, series=series)
        summary_only = summary_frame(summary_html=summary_html)
    else:
        languages = summary_html.keys() if isinstance(summary_html, dict) else panels_html.keys()

        def pick(rendered, code):
            return rendered if isinstance(rendered, str) else rendered.get(code, "")

        frame = {code: tick_frame(summary_html=pick(summary_html, code), panels_html=pick(panels_html, code), series=series)
                 for code in languages}
        summary_only = {code: summary_frame(summary_html=pick(summary_html, code)) for code in languages}
    _send({"type": EVENT_TICK, "frame": frame, "summary_frame": summary_only})


def alert_frame(alert, event: str, language: str | None = None) -> str:
    with translation.override(language) if language else nullcontext():
        html = render_to_string("monitoring/_toast.html", {"alert": alert, "event": event})
    return json.dumps(
        {"kind": "alert", "event": event, "id": alert.pk, "severity": alert.severity, "title": alert.title, "html": html},
        ensure_ascii=False,
    )


def broadcast_alert(alert, event: str) -> None:
    """Call after the alert's transaction committed. One frame per language read."""
    from demands.live import languages_needed

    _send({"type": EVENT_ALERT, "frame": {code: alert_frame(alert, event, code) for code in languages_needed()}})
