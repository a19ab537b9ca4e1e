"""Live updates: group names, event types, and the functions that broadcast changes.

A change is rendered once (HTML for a list row, a detail page's summary and history entry, a
notification) and sent to a group in one message; each websocket consumer forwards what matches
its page. Browsers never get a per-browser render, and the consume loop never waits on browsers.

Groups: `demands` (every list page), `demand-<pk>` (pages showing that demand), `user-<id>`
(every page of that user: notifications).
"""

from __future__ import annotations

import asyncio
import os
import threading

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.template.loader import render_to_string
from django.utils import translation

DEMANDS_GROUP = "demands"
EVENT_DEMANDS_CREATED = "demands.created"  # handled by DemandStreamConsumer.demands_created
EVENT_DEMANDS_CHANGED = "demands.changed"  # … .demands_changed
EVENT_DEMAND_DETAIL = "demand.detail"  # … .demand_detail
EVENT_USER_NOTIFY = "user.notify"  # … .user_notify


def demand_group(pk: int) -> str:
    return f"demand-{pk}"


def user_group(user_id: int) -> str:
    return f"user-{user_id}"


def render_each_language(template: str, context: dict) -> dict[str, str]:
    """One render per UI language: each socket sends its reader's (see consumers)."""
    rendered = {}
    for code, _name in settings.LANGUAGES:
        with translation.override(code):
            rendered[code] = render_to_string(template, context)
    return rendered


def row_payload(demand, *, is_new: bool = True, language: str | None = None) -> dict:
    """What a consumer needs to filter and show one demand without touching the database.
    `html` maps each language to the rendered row (only `language`'s, when one is given)."""
    return {
        "id": demand.pk,
        "status": demand.status,
        "type": demand.type,
        "source": demand.source,
        "priority": demand.priority,
        "message_id": demand.message_id,
        "content": demand.content,
        "assignee_id": demand.assignee_id,
        "team_id": demand.team_id,
        "group_id": demand.group_id,
        "tags": list(demand.tags or []),
        "received_at": demand.received_at.isoformat(),
        "html": render_each_language("demands/list.html#row", {"demand": demand, "is_new": is_new})
        if language is None
        else {language: _render_in(language, "demands/list.html#row", {"demand": demand, "is_new": is_new})},
    }


def _render_in(language: str, template: str, context: dict) -> str:
    with translation.override(language):
        return render_to_string(template, context)


def wrap_rows(html_rows: list[str], *, more: bool = False) -> str:
    """A frame of new rows, newest first, for the top of a list page's table. `more`: there were
    more new demands than rows sent; the page asks for the rest with a resume request."""
    return f'<tbody id="demand-rows"{" data-more" if more else ""}>' + "".join(html_rows) + "</tbody>"


def wrap_updates(html_rows: list[str], removed_ids: list[int] = ()) -> str:
    """A frame of changed rows: replaced in place where shown; `removed` rows no longer match the page."""
    removed = "".join(f'<tr id="demand-{pk}" data-id="{pk}" data-remove></tr>' for pk in removed_ids)
    return '<tbody id="demand-updates">' + "".join(html_rows) + removed + "</tbody>"


# The server's event loop when this process also serves websockets (run_dashboard). Sending on
# it wakes the sockets' consumers at once; a send from another thread's temporary loop is only
# noticed at the server loop's next wake-up (up to ~1 s with daphne): measured p50 555 → 59 ms.
_server_loop: asyncio.AbstractEventLoop | None = None


def use_server_loop(loop: asyncio.AbstractEventLoop | None) -> None:
    global _server_loop
    _server_loop = loop


# A process that serves no websockets (consume_demands) sends through a network layer (Redis).
# async_to_sync would start a thread and a new event loop for every send, and the Redis layer,
# which keeps a connection per loop, would connect and disconnect each time (~3–4 ms a batch, the
# bulk of the consumer's CPU at 50 batches/s). One long-lived loop keeps one connection instead.
_sender_loop: asyncio.AbstractEventLoop | None = None
_sender_pid = 0
_sender_lock = threading.Lock()


def _network_sender_loop() -> asyncio.AbstractEventLoop:
    global _sender_loop, _sender_pid
    with _sender_lock:
        if _sender_loop is None or _sender_pid != os.getpid():  # after a fork the thread is gone
            _sender_loop = asyncio.new_event_loop()
            _sender_pid = os.getpid()
            threading.Thread(target=_sender_loop.run_forever, name="live-broadcasts", daemon=True).start()
        return _sender_loop


def group_send(group: str, event: dict) -> None:
    """Send to a group from synchronous code (views, services, the consume loop)."""
    from channels.layers import InMemoryChannelLayer

    layer = get_channel_layer()
    loop = _server_loop
    if loop is not None and loop.is_running():
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not loop:
            asyncio.run_coroutine_threadsafe(layer.group_send(group, event), loop).result(timeout=10)
            return
    if not isinstance(layer, InMemoryChannelLayer):
        # The in-memory layer's queues belong to the server's loop, which async_to_sync reaches
        # from a server thread; a network layer is reached from any loop.
        asyncio.run_coroutine_threadsafe(layer.group_send(group, event), _network_sender_loop()).result(timeout=10)
        return
    async_to_sync(layer.group_send)(group, event)



def broadcast_demands_created(demands) -> None:
    """Send a batch of new demands to every open list page. Call after the transaction committed."""
    if not demands:
        return
    # A burst renders only a page's worth of rows (rendering is the costly part of a broadcast);
    # `more` tells each page to fetch the rest of what matches its filters itself (resume).
    newest = sorted(demands, key=lambda d: d.pk, reverse=True)[: settings.DEMANDS_LIVE_BATCH_ROWS]
    # Ingest hands over its light rows (ingest.NewDemand); templates want the model.
    rows = [row_payload(demand.to_model() if hasattr(demand, "to_model") else demand) for demand in newest]
    group_send(DEMANDS_GROUP, {"type": EVENT_DEMANDS_CREATED, "rows": rows, "more": len(demands) > len(newest)})


def broadcast_demand_changed(pk: int, *, event_ids=(), notification_ids=()) -> None:
    """After a triage change committed: update list rows, detail pages and notify people."""
    from .models import Demand, DemandEvent  # live is imported by models' users

    demand = Demand.objects.select_related("assignee", "team", "group", "duplicate_of").get(pk=pk)
    group_send(DEMANDS_GROUP, {"type": EVENT_DEMANDS_CHANGED, "rows": [row_payload(demand, is_new=False)]})
    events = list(DemandEvent.objects.filter(pk__in=list(event_ids)).select_related("actor", "rule").order_by("id"))
    detail_html = {}
    for code, _name in settings.LANGUAGES:
        with translation.override(code):
            detail_html[code] = render_to_string("demands/detail.html#summary", {"demand": demand, "live": True}) + (
                '<ol id="history" data-append>'
                + "".join(render_to_string("demands/detail.html#event", {"event": event}) for event in events)
                + "</ol>"
            )
    group_send(demand_group(pk), {"type": EVENT_DEMAND_DETAIL, "html": detail_html, "version": demand.version})
    broadcast_notifications(notification_ids)


def broadcast_notifications(notification_ids) -> None:
    """Show new notifications on every open page of their users, with the unread count."""
    from .models import Notification

    for notification in Notification.objects.filter(pk__in=list(notification_ids)):
        unread = Notification.objects.filter(user_id=notification.user_id, read_at__isnull=True).count()
        html = render_each_language("demands/_notification.html", {"notification": notification, "unread": unread})
        group_send(user_group(notification.user_id), {"type": EVENT_USER_NOTIFY, "html": html})
