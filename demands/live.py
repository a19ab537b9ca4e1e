"""Live updates: group names, event types, and the one function that broadcasts new demands.

A batch is rendered once (one HTML row per demand) and sent to the group in one message; each
websocket consumer then forwards the rows that match its page's filters. Browsers never get a
per-browser render, and the consume loop never waits on slow browsers.
"""

from __future__ import annotations

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.template.loader import render_to_string

DEMANDS_GROUP = "demands"
EVENT_DEMANDS_CREATED = "demands.created"  # handled by DemandStreamConsumer.demands_created


def row_payload(demand, *, is_new: bool = True) -> dict:
    """What a consumer needs to filter and show one demand without touching the database."""
    return {
        "id": demand.pk,
        "status": demand.status,
        "type": demand.type,
        "source": demand.source,
        "priority": demand.priority,
        "message_id": demand.message_id,
        "content": demand.content,
        "html": render_to_string("demands/list.html#row", {"demand": demand, "is_new": is_new}),
    }


def wrap_rows(html_rows: list[str]) -> str:
    """One websocket frame: rows prepended (newest first) into the list's tbody by htmx's ws extension."""
    return '<tbody id="demand-rows" hx-swap-oob="afterbegin">' + "".join(html_rows) + "</tbody>"


def broadcast_demands_created(demands) -> None:
    """Send a batch of new demands to every open list page. Call after the transaction committed."""
    if not demands:
        return
    newest = sorted(demands, key=lambda d: d.pk, reverse=True)[: settings.DEMANDS_LIVE_MAX_ROWS]
    rows = [row_payload(demand) for demand in newest]
    async_to_sync(get_channel_layer().group_send)(DEMANDS_GROUP, {"type": EVENT_DEMANDS_CREATED, "rows": rows})
