"""Websocket consumers: the live stream behind every page (authenticated, active staff only)."""

from __future__ import annotations

import json
from datetime import timezone as dt_timezone
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from . import live, selectors

# Close codes in the 4000 range are ours.
CLOSE_FORBIDDEN = 4403


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


class DemandStreamConsumer(AsyncWebsocketConsumer):
    """One socket per page.

    - List pages (/ws/demands/?filters…): new demands matching the page's filters, and changed
      rows (replaced in place; removed when they no longer match). Each time the socket opens,
      the page sends {"resume_after": <newest id it shows>} and gets every matching demand newer
      than that (bounded), so a dropped connection leaves no gap; the page drops rows it has.
    - Detail pages (/ws/demands/<pk>/): the demand's summary and new history entries.
    - Every page: the user's notifications (other pages: /ws/notifications/ only).
    """

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active or not user.is_staff:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.language = await database_sync_to_async(reader_language)(user, dict(self.scope.get("headers") or []))
        self.demand_pk = self.scope["url_route"]["kwargs"].get("pk")
        self.notifications_only = self.scope["path"].rstrip("/").endswith("/notifications")
        self.groups_joined = [live.user_group(user.pk)]
        if self.notifications_only:
            self.demand_pk = 0  # no demand stream: the list handlers below ignore this socket
        elif self.demand_pk is None:
            params = {key: values[-1] for key, values in parse_qs(self.scope["query_string"].decode()).items()}
            self.filters = await database_sync_to_async(self._filters)(params, user)
            self.groups_joined.append(live.DEMANDS_GROUP)
        else:
            self.groups_joined.append(live.demand_group(self.demand_pk))
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()

    @staticmethod
    def _filters(params: dict, user) -> selectors.DemandFilters:
        """The page's filters, with dates in the user's time zone (no middleware on sockets)."""
        from .middleware import preference_zone
        from .models import UserPreference

        zone = UserPreference.objects.filter(user=user).values_list("time_zone", flat=True).first()
        return selectors.DemandFilters.from_params(params, user=user, tz=preference_zone(zone) or dt_timezone.utc)

    async def disconnect(self, code):
        for group in getattr(self, "groups_joined", ()):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        if self.demand_pk is not None:
            return
        try:
            data = json.loads(text_data or "{}")
            after = int(data["resume_after"])
        except (ValueError, TypeError, KeyError, RecursionError):
            return  # not a resume request: nothing else is accepted from the page
        rows = await self._rows_after(after)
        if rows:
            await self.send(text_data=live.wrap_rows(rows))

    @database_sync_to_async
    def _rows_after(self, after: int) -> list[str]:
        demands = selectors.demands_after(filters=self.filters, after=after, limit=settings.DEMANDS_LIVE_MAX_ROWS)
        return [live.row_payload(demand, language=self.language)["html"][self.language] for demand in demands]

    async def demands_created(self, event):
        if self.demand_pk is not None:
            return
        rows = [self._html(row["html"]) for row in event["rows"] if self.filters.matches(row)]
        if rows or event.get("more"):
            await self.send(text_data=live.wrap_rows(rows, more=event.get("more", False)))

    async def demands_changed(self, event):
        if self.demand_pk is not None:
            return
        shown, removed = [], []
        for row in event["rows"]:
            (shown if self.filters.matches(row) else removed).append(row)
        await self.send(text_data=live.wrap_updates([self._html(row["html"]) for row in shown], [row["id"] for row in removed]))

    async def demand_detail(self, event):
        await self.send(text_data=self._html(event["html"]))

    async def user_notify(self, event):
        await self.send(text_data=self._html(event["html"]))

    def _html(self, rendered: dict[str, str] | str) -> str:
        """The reader's language from a fragment rendered in each (see live.render_each_language)."""
        if isinstance(rendered, str):
            return rendered
        return rendered.get(self.language) or rendered[settings.LANGUAGE_CODE]
