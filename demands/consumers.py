"""Websocket consumers: the one live socket behind every page (authenticated, active staff only)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from datetime import timezone as dt_timezone
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from . import access, live, selectors
from .monitoring import live as monitoring_live

logger = logging.getLogger(__name__)

# Close codes in the 4000 range are ours.
CLOSE_FORBIDDEN = 4403

# Channel-layer events whose handlers below touch no database: dispatched without channels'
# per-message `close_old_connections` thread hop (a third of a busy server's time with 1,000 sockets).
_IN_MEMORY_EVENTS = frozenset({
    live.EVENT_DEMANDS_CREATED, live.EVENT_DEMANDS_CHANGED, live.EVENT_DEMAND_DETAIL, live.EVENT_USER_NOTIFY,
    live.EVENT_ACCESS_REVOKED, monitoring_live.EVENT_TICK, monitoring_live.EVENT_ALERT,
})

# The longest a list broadcast waits to be coalesced with the ones after it (see ListFanout).
FANOUT_GATHER_MAX = 0.25
# After a round of sends, wait this many times the round's CPU time (the writes it queued
# included) before the next one, so rounds take at most about half the server's time. With
# 1,000 sockets at 50/s (bench/fanout.py) that is ~9 frames per socket a second instead of 50.
FANOUT_GATHER_RATIO = 1
# Sockets sent to between two yields to the event loop within a round.
FANOUT_SOCKETS_PER_STEP = 50


class ListFanout:
    """Every list-page socket of this process, fed from one channel-layer subscription.

    With a socket per group member, each broadcast costs every socket a channel-layer delivery (a
    deserialisation on Redis, a deep copy in memory), a dispatch and a frame; at 1,000 sockets and
    50 demands/s that is 50,000 of each per second, more than one process can do. Here the process
    receives each broadcast once; sockets with the same filters and language share the matching
    and the frame; and broadcasts that arrive while a round of sends is going out are coalesced
    into one frame per socket: after sending, the fan-out waits FANOUT_GATHER_RATIO times the
    sending's CPU time (at most FANOUT_GATHER_MAX) before the next round. A lone broadcast is
    sent at once, so with few sockets nothing waits; with many, each socket gets fewer, larger
    frames. (bench/fanout.py, 1,000 sockets at 50/s on one daphne: p99 from ~77 s, the server
    never catching up, to ~0.3 s with every row delivered.)
    """

    _instances: dict = {}  # (event loop, channel layer) → the running fan-out

    def __init__(self, layer, key):
        self.layer, self.key = layer, key
        self.sockets: set[DemandStreamConsumer] = set()
        self.pending: list[dict] = []
        self.channel: str | None = None
        self._started: asyncio.Future | None = None
        self._receiver: asyncio.Task | None = None
        self._sender: asyncio.Task | None = None

    @classmethod
    async def join(cls, consumer: DemandStreamConsumer) -> ListFanout:
        key = (asyncio.get_running_loop(), consumer.channel_layer)
        fanout = cls._instances.get(key)
        if fanout is None:
            fanout = cls._instances[key] = cls(consumer.channel_layer, key)
        fanout.sockets.add(consumer)
        if fanout._started is None:
            fanout._started = asyncio.ensure_future(fanout._subscribe())
        try:
            await asyncio.shield(fanout._started)
        except Exception:  # the layer is unreachable: this socket fails; the next one tries anew
            fanout.sockets.discard(consumer)
            if cls._instances.get(key) is fanout:
                del cls._instances[key]
            raise
        return fanout

    async def leave(self, consumer: DemandStreamConsumer) -> None:
        self.sockets.discard(consumer)
        if self.sockets or self._instances.get(self.key) is not self:
            return
        del self._instances[self.key]  # a socket that opens from now on starts a new fan-out
        for task in (self._receiver, self._sender):
            if task is not None:
                task.cancel()
        if self._started is not None and self._started.done() and not self._started.exception():
            await self.layer.group_discard(live.DEMANDS_GROUP, self.channel)

    async def _subscribe(self) -> None:
        self.channel = await self.layer.new_channel()
        await self.layer.group_add(live.DEMANDS_GROUP, self.channel)
        self._receiver = asyncio.ensure_future(self._receive())

    async def _receive(self) -> None:
        while True:
            try:
                event = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:  # keep serving the pages; the layer reconnects by itself
                logger.exception("receiving list broadcasts failed; retrying in 1 s")
                await asyncio.sleep(1)
                continue
            if event.get("type") not in (live.EVENT_DEMANDS_CREATED, live.EVENT_DEMANDS_CHANGED):
                continue
            self.pending.append(event)
            if self._sender is None or self._sender.done():
                self._sender = asyncio.ensure_future(self._send())

    async def _send(self) -> None:
        while self.pending:
            events, self.pending = self.pending, []
            # CPU time, not wall time: a round that was slow because the process was descheduled
            # (or waited for the GIL) must not make the next broadcasts wait longer still.
            started = time.thread_time()
            frames_by_page: dict = {}  # (filters, language) → frames: computed once per kind of page
            for index, socket in enumerate(list(self.sockets)):
                if index and index % FANOUT_SOCKETS_PER_STEP == 0:
                    # Let the loop write out what is queued so far (and run anything else waiting)
                    # while the round goes on: the first pages need not wait for the last.
                    await asyncio.sleep(0)
                try:
                    frames = frames_by_page.get(socket.page_key)
                    if frames is None:
                        frames = frames_by_page[socket.page_key] = socket.list_frames(events)
                    for frame in frames:
                        await socket.push(frame)
                except Exception:  # one socket's failure must not cost the others their rows
                    logger.exception("sending live rows to a list page failed")
            # Broadcasts that arrive meanwhile go out together in the next round.
            await asyncio.sleep(min(FANOUT_GATHER_RATIO * (time.thread_time() - started), FANOUT_GATHER_MAX))


class DemandStreamConsumer(AsyncWebsocketConsumer):
    """The page's one socket. What it carries depends on the page (its path):

    - List pages (/ws/demands/?filters…): new demands matching the page's filters, and changed
      rows (replaced in place; removed when they no longer match). Each time the socket opens,
      the page sends {"resume_after": <newest id it shows>} and gets every matching demand newer
      than that (bounded), so a dropped connection leaves no gap; the page drops rows it has.
      Resume requests are answered at most once per DEMANDS_WS_RESUME_INTERVAL; those that come
      sooner are merged into one answer when the interval is over.
    - Detail pages (/ws/demands/<pk>/): the demand's summary and new history entries.
    - The monitoring page (/ws/monitoring/): the monitor's full ticks (panels, chart series).
    - Every page (other pages: /ws/notifications/): the user's notifications, the header's
      monitoring summary and alert toasts (JSON frames; every other frame is HTML).

    Access is checked at connect, again every DEMANDS_WS_ACCESS_RECHECK_SECONDS and before
    sending on a socket whose last check is older than that; signing out of the session, or the
    user losing is_active/is_staff, closes the socket at once (live.revoke_sockets). Closed with
    4403: the page does not reconnect.
    """

    page: str | None = None  # "list", "detail", "notifications" or "monitoring"; None: from the path
    clock = staticmethod(time.monotonic)  # access re-checks and resume pacing (tests move it)

    async def connect(self):
        user = self.scope.get("user")
        self.revoked = False
        if not access.is_staff(user):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.user_id = user.pk
        self.access_checked_at = self.clock()
        self.resume_ready_at = 0.0  # the clock time the next resume request may be answered at
        self._resume_after: int | None = None  # the request waiting for that time, merged
        self._resume_waiting: asyncio.Task | None = None
        self.language = await database_sync_to_async(live.reader_language)(user, dict(self.scope.get("headers") or []))
        self.demand_pk = (self.scope.get("url_route") or {}).get("kwargs", {}).get("pk")
        if self.page is None:
            path = self.scope.get("path", "").rstrip("/")
            self.page = "detail" if self.demand_pk is not None else (
                "notifications" if path.endswith("/notifications") else "monitoring" if path.endswith("/monitoring") else "list"
            )
        # Every page shows the header's monitoring summary, alert toasts and the user's notifications.
        self.groups_joined = [live.user_group(user.pk), monitoring_live.MONITORING_GROUP]
        if self.page == "list":
            params = {key: values[-1] for key, values in parse_qs(self.scope.get("query_string", b"").decode()).items()}
            self.filters = await database_sync_to_async(self._filters)(params, user)
            # Pages that would get the same frames: same filters (as resolved for this user), same language.
            self.page_key = (tuple(getattr(self.filters, f.name) for f in dataclasses.fields(self.filters)), self.language)
        elif self.page == "detail":
            self.groups_joined.append(live.demand_group(self.demand_pk))
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        live.reader_opened(user_id=self.user_id, language=self.language)
        self.reading = True
        if self.page == "list":  # list pages get new and changed rows through the process's fan-out
            self.fanout = await ListFanout.join(self)
        await self.accept()
        self._access_watch = asyncio.ensure_future(self._watch_access())

    @staticmethod
    def _filters(params: dict, user) -> selectors.DemandFilters:
        """The page's filters, with dates in the user's time zone (no middleware on sockets)."""
        from .middleware import preference_zone
        from .models import UserPreference

        zone = UserPreference.objects.filter(user=user).values_list("time_zone", flat=True).first()
        return selectors.DemandFilters.from_params(params, user=user, tz=preference_zone(zone) or dt_timezone.utc)

    async def disconnect(self, code):
        await self._leave()

    async def _leave(self) -> None:
        """Stop everything this socket receives (idempotent: revoking leaves before closing)."""
        for task in (getattr(self, "_access_watch", None), getattr(self, "_resume_waiting", None)):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        fanout, self.fanout = getattr(self, "fanout", None), None
        if fanout is not None:
            await fanout.leave(self)
        groups, self.groups_joined = getattr(self, "groups_joined", ()), []
        for group in groups:
            await self.channel_layer.group_discard(group, self.channel_name)
        if getattr(self, "reading", False):
            self.reading = False
            live.reader_closed(user_id=self.user_id, language=self.language)

    async def dispatch(self, message):
        """As channels' dispatch, minus its database clean-up for handlers that use no database."""
        if message.get("type") in _IN_MEMORY_EVENTS:
            await getattr(self, message["type"].replace(".", "_"))(message)
        else:
            await super().dispatch(message)

    # -- access ---------------------------------------------------------------------------------
    @staticmethod
    def _recheck_seconds() -> float:
        return float(getattr(settings, "DEMANDS_WS_ACCESS_RECHECK_SECONDS", 60))

    async def _watch_access(self) -> None:
        while not self.revoked:
            await asyncio.sleep(max(0.0, self.access_checked_at + self._recheck_seconds() - self.clock()))
            if self.clock() - self.access_checked_at >= self._recheck_seconds():
                await self.recheck_access()

    async def recheck_access(self) -> bool:
        self.access_checked_at = self.clock()  # first: a send meanwhile does not check again
        try:
            allowed = await self._still_allowed()
        except Exception:  # the database is unreachable: keep the socket, try again next time
            logger.warning("re-checking a websocket's access failed", exc_info=True)
            return True
        if not allowed:
            await self.revoke()
        return allowed

    @database_sync_to_async
    def _still_allowed(self) -> bool:
        """The user is still active staff, and (for a session-backed socket) still signed in."""
        from django.contrib.auth import get_user_model
        from django.contrib.sessions.backends.signed_cookies import SessionStore as CookieSession

        if not access.is_staff(get_user_model()._default_manager.filter(pk=self.user_id).first()):
            return False
        session = self.scope.get("session")
        key = getattr(session, "session_key", None)
        # A logout in another process whose message never came still shows: the session is gone.
        return not key or isinstance(session, CookieSession) or session.exists(key)

    async def revoke(self) -> None:
        if self.revoked:
            return
        self.revoked = True
        await self._leave()
        await self.close(code=CLOSE_FORBIDDEN)

    async def access_revoked(self, event):
        signed_out = event.get("session_key")
        mine = getattr(self.scope.get("session"), "session_key", None)
        if signed_out and mine and signed_out != mine:
            return  # the user signed out in another browser; this one's session still stands
        await self.revoke()

    async def push(self, frame: str) -> None:
        """Send a frame to the page, unless its reader lost access (checked first when stale)."""
        if self.revoked:
            return
        if self.clock() - self.access_checked_at >= self._recheck_seconds() and not await self.recheck_access():
            return
        await self.send(text_data=frame)

    # -- resume requests (list pages) -------------------------------------------------------------
    async def receive(self, text_data=None, bytes_data=None):
        if self.page != "list" or self.revoked:
            return
        try:
            data = json.loads(text_data or "{}")
            after = int(data["resume_after"])
        except (ValueError, TypeError, KeyError, RecursionError):
            return  # not a resume request: nothing else is accepted from the page
        if self._resume_waiting is not None:  # one is already waiting: it answers this one too
            self._resume_after = min(self._resume_after, after)
            return
        wait = self.resume_ready_at - self.clock()
        if wait > 0:
            # Each answer renders up to DEMANDS_LIVE_MAX_ROWS rows: a page (or a script) asking
            # faster gets one merged answer per interval, and misses nothing.
            self._resume_after = after
            self._resume_waiting = asyncio.ensure_future(self._resume_later(wait))
            return
        await self._resume(after)

    async def _resume_later(self, wait: float) -> None:
        await asyncio.sleep(wait)
        after, self._resume_after, self._resume_waiting = self._resume_after, None, None
        await self._resume(after)

    async def _resume(self, after: int) -> None:
        self.resume_ready_at = self.clock() + float(getattr(settings, "DEMANDS_WS_RESUME_INTERVAL", 1.0))
        rows = await self._rows_after(after)
        if rows:
            await self.push(live.wrap_rows(rows))

    @database_sync_to_async
    def _rows_after(self, after: int) -> list[str]:
        demands = selectors.demands_after(filters=self.filters, after=after, limit=settings.DEMANDS_LIVE_MAX_ROWS)
        return [live.row_payload(demand, language=self.language)["html"][self.language] for demand in demands]

    # -- broadcasts -------------------------------------------------------------------------------
    def list_frames(self, events: list[dict]) -> list[str]:
        """This page's frames for a run of list broadcasts, in order. New rows of consecutive
        `demands.created` events go out as one frame, newest first (`more` if any had more);
        each `demands.changed` event is a frame of its own (a row's changes apply in order)."""
        frames, rows, more = [], [], False

        def flush_rows():
            nonlocal rows, more
            if rows or more:
                rows.sort(key=lambda row: row["id"], reverse=True)
                frames.append(live.wrap_rows([self._html(row["html"]) for row in rows], more=more))
            rows, more = [], False

        for event in events:
            if event["type"] == live.EVENT_DEMANDS_CREATED:
                rows.extend(row for row in event["rows"] if self.filters.matches(row))
                more = more or event.get("more", False)
            elif event["type"] == live.EVENT_DEMANDS_CHANGED:
                flush_rows()
                shown, removed = [], []
                for row in event["rows"]:
                    (shown if self.filters.matches(row) else removed).append(row)
                frames.append(live.wrap_updates([self._html(row["html"]) for row in shown], [row["id"] for row in removed]))
        flush_rows()
        return frames

    # List broadcasts reach list pages through ListFanout; a socket sent one directly handles it alike.
    async def demands_created(self, event):
        if self.page != "list":
            return
        for frame in self.list_frames([event]):
            await self.push(frame)

    demands_changed = demands_created

    async def demand_detail(self, event):
        await self.push(self._html(event["html"]))

    async def user_notify(self, event):
        await self.push(self._html(event["html"]))

    async def monitoring_tick(self, event):
        # Only the monitoring page shows the panels and charts; other pages, the header summary.
        frame = event["frame"] if self.page == "monitoring" else event.get("summary_frame") or event["frame"]
        await self.push(self._html(frame))  # rendered per language (monitoring/live.py): the reader's

    async def monitoring_alert(self, event):
        await self.push(self._html(event["frame"]))

    def _html(self, rendered: dict[str, str] | str) -> str:
        """The reader's language from a fragment rendered in each language needed (live.render_in)."""
        if isinstance(rendered, str):
            return rendered
        return rendered.get(self.language) or rendered.get(settings.LANGUAGE_CODE) or next(iter(rendered.values()), "")
