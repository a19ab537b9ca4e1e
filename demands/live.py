"""Live updates: group names, event types, and the functions that broadcast changes.

A change is rendered once (HTML for a list row, a detail page's summary and history entry, a
notification) and sent to a group in one message; each websocket consumer forwards what matches
its page. Browsers never get a per-browser render, and the consume loop never waits on browsers.

Groups: `demands` (every list page), `demand-<pk>` (pages showing that demand), `user-<id>`
(every page of that user: notifications, and the message that closes them when the user signs
out or loses access), `monitoring` (every page: see demands/monitoring/live.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections import Counter

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.template.loader import render_to_string
from django.utils import translation

from . import list_rows

logger = logging.getLogger(__name__)

DEMANDS_GROUP = "demands"
EVENT_DEMANDS_CREATED = "demands.created"  # handled by DemandStreamConsumer.demands_created
EVENT_DEMANDS_CHANGED = "demands.changed"  # … .demands_changed
EVENT_DEMAND_DETAIL = "demand.detail"  # … .demand_detail
EVENT_USER_NOTIFY = "user.notify"  # … .user_notify
EVENT_ACCESS_REVOKED = "access.revoked"  # … .access_revoked: the user's sockets close


def demand_group(pk: int) -> str:
    return f"demand-{pk}"


def user_group(user_id: int) -> str:
    return f"user-{user_id}"


# -- who reads, in which language --------------------------------------------------------------
# The sockets this process serves, counted by reader language (and by user). With the in-memory
# channel layer every reader is one of them, so a broadcast is rendered in the languages they read
# and no other; with a network layer (Redis) readers may be in any process, and each fragment is
# rendered once in each of settings.LANGUAGES (a user's notifications in their chosen language).
_readers_lock = threading.Lock()
_languages_read: Counter = Counter()
_languages_read_by_user: dict[int, Counter] = {}


def reader_opened(*, user_id: int, language: str) -> None:
    with _readers_lock:
        _languages_read[language] += 1
        _languages_read_by_user.setdefault(user_id, Counter())[language] += 1


def reader_closed(*, user_id: int, language: str) -> None:
    with _readers_lock:
        _languages_read[language] -= 1
        if _languages_read[language] <= 0:
            del _languages_read[language]
        by_user = _languages_read_by_user.get(user_id)
        if by_user is not None:
            by_user[language] -= 1
            if by_user[language] <= 0:
                del by_user[language]
            if not by_user:
                del _languages_read_by_user[user_id]


def reader_language(user, headers: dict[bytes, bytes]) -> str:
    """The language the user's pages are in: their preference, else the browser's (as
    LocaleMiddleware decides for pages), else the site default."""
    from django.utils.translation import get_supported_language_variant
    from django.utils.translation.trans_real import parse_accept_lang_header

    from .models import UserPreference

    preferred = UserPreference.objects.filter(user=user).values_list("language", flat=True).first()
    if preferred:
        return preferred
    cookie_header = headers.get(b"cookie", b"").decode("latin-1")
    for part in cookie_header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == settings.LANGUAGE_COOKIE_NAME and value:
            try:
                return get_supported_language_variant(value)
            except LookupError:
                pass
    for code, _quality in parse_accept_lang_header(headers.get(b"accept-language", b"").decode("latin-1")):
        try:
            return get_supported_language_variant(code)
        except LookupError:
            continue
    return settings.LANGUAGE_CODE


def _every_reader_is_local() -> bool:
    from channels.layers import InMemoryChannelLayer

    return isinstance(get_channel_layer(), InMemoryChannelLayer)


def _all_languages() -> list[str]:
    return [code for code, _name in settings.LANGUAGES]


def languages_needed() -> list[str]:
    """The languages to render a broadcast to list and detail pages in."""
    if _every_reader_is_local():
        with _readers_lock:
            read = sorted(_languages_read)
        if read:
            return read
    return _all_languages()  # nobody known (a bare channel, another process): every language, once


def languages_needed_by(user_ids) -> dict[int, list[str]]:
    """The languages each user's pages are in: those of their open sockets when every reader is
    local, else their chosen language, else every language."""
    from .models import UserPreference

    user_ids = set(user_ids)
    needed: dict[int, list[str]] = {}
    if _every_reader_is_local():
        with _readers_lock:
            needed = {uid: sorted(_languages_read_by_user[uid]) for uid in user_ids if uid in _languages_read_by_user}
    missing = user_ids - needed.keys()
    if missing:
        chosen = dict(
            UserPreference.objects.filter(user_id__in=missing).exclude(language="").values_list("user_id", "language")
        )
        for uid in missing:
            needed[uid] = [chosen[uid]] if uid in chosen else _all_languages()
    return needed


def render_in(languages, template: str, context: dict) -> dict[str, str]:
    """`template` rendered once in each of `languages`: each socket sends its reader's (see consumers)."""
    rendered = {}
    for code in languages:
        with translation.override(code):
            rendered[code] = render_to_string(template, context)
    return rendered


def row_in(languages, demand, *, is_new: bool) -> dict[str, str]:
    """The demand's list row in each of `languages` (list_rows.row: the page's rows are the same)."""
    rendered = {}
    for code in languages:
        with translation.override(code):
            rendered[code] = list_rows.row(demand, is_new=is_new)
    return rendered


def row_payload(demand, *, is_new: bool = True, language: str | None = None, languages=None) -> dict:
    """What a consumer needs to filter and show one demand without touching the database.
    `html` maps each language needed (or only `language`, or `languages`) to the rendered row."""
    if languages is None:
        languages = languages_needed() if language is None else [language]
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
        "archived": demand.archived_at is not None,  # lists show live demands unless asked (archive/scope.py)
        "received_at": demand.received_at.isoformat(),
        "sla_state": demand.sla_state, "sla_due_at": demand.sla_due_at.isoformat() if demand.sla_due_at else None,
        "html": row_in(languages, demand, is_new=is_new),
    }


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
    demands = [demand for demand in demands if getattr(demand, "archived_at", None) is None]  # noise archived on arrival
    if not demands:
        return
    # A burst renders only a page's worth of rows (rendering is the costly part of a broadcast);
    # `more` tells each page to fetch the rest of what matches its filters itself (resume).
    newest = sorted(demands, key=lambda d: d.pk, reverse=True)[: settings.DEMANDS_LIVE_BATCH_ROWS]
    # Ingest hands over its light rows (ingest.NewDemand); templates want the model.
    languages = languages_needed()
    rows = [row_payload(demand.to_model() if hasattr(demand, "to_model") else demand, languages=languages) for demand in newest]
    group_send(DEMANDS_GROUP, {"type": EVENT_DEMANDS_CREATED, "rows": rows, "more": len(demands) > len(newest)})


def broadcast_demand_changed(pk: int, *, event_ids=(), notification_ids=()) -> None:
    """After a triage change committed: update list rows, detail pages and notify people."""
    from .models import Demand, DemandEvent  # live is imported by models' users

    demand = Demand.objects.select_related("assignee", "team", "group", "duplicate_of").get(pk=pk)
    languages = languages_needed()
    group_send(DEMANDS_GROUP, {"type": EVENT_DEMANDS_CHANGED, "rows": [row_payload(demand, is_new=False, languages=languages)]})
    events = list(DemandEvent.objects.filter(pk__in=list(event_ids)).select_related("actor", "rule").order_by("id"))
    detail_html = {}
    for code in languages:
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
    from django.db.models import Count

    from .models import Notification

    # The demand's team names the group of a toast ("4 demands routed to Payments").
    notifications = list(Notification.objects.filter(pk__in=list(notification_ids)).select_related("demand__team").order_by("id"))
    if not notifications:
        return
    user_ids = {notification.user_id for notification in notifications}
    unread = dict(
        Notification.objects.filter(user_id__in=user_ids, read_at__isnull=True)
        .values("user_id").annotate(n=Count("id")).values_list("user_id", "n")
    )
    languages = languages_needed_by(user_ids)
    for notification in notifications:
        context = {"notification": notification, "unread": unread.get(notification.user_id, 0)}
        html = render_in(languages[notification.user_id], "demands/_notification.html", context)
        group_send(user_group(notification.user_id), {"type": EVENT_USER_NOTIFY, "html": html})


# -- access lost ------------------------------------------------------------------------------------
def revoke_sockets(user_id: int, *, session_key: str | None = None) -> None:
    """Close the user's open sockets (only those of `session_key`'s browser, when given)."""
    try:
        group_send(user_group(user_id), {"type": EVENT_ACCESS_REVOKED, "session_key": session_key})
    except Exception:  # never fail the logout or the save: sockets re-check access on their own
        logger.exception("closing the websockets of user %s failed", user_id)


def on_user_logged_out(sender, request, user, **kwargs) -> None:
    if user is not None:
        revoke_sockets(user.pk, session_key=getattr(getattr(request, "session", None), "session_key", None))


def on_user_saved(sender, instance, created=False, raw=False, **kwargs) -> None:
    """A user saved inactive or not staff (deactivated, de-staffed) loses their open sockets."""
    from django.db import transaction

    if created or raw or (instance.is_active and instance.is_staff):
        return
    user_id = instance.pk
    transaction.on_commit(lambda: revoke_sockets(user_id))
