"""Websocket consumers: the live demand stream behind every list page (authenticated staff only)."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from . import live, selectors

# Close codes in the 4000 range are ours: the page shows why instead of reconnecting forever.
CLOSE_FORBIDDEN = 4403


class DemandStreamConsumer(AsyncWebsocketConsumer):
    """Forwards new demands matching the page's filters; on (re)connect, replays what the page missed.

    Protocol: the page connects to /ws/demands/?status=…&type=…&source=…&search=… and, each
    time the socket opens, sends {"resume_after": <newest demand id it shows>}; the server answers
    with every matching demand newer than that (bounded), then live rows as batches arrive. The
    page drops rows it already has, so overlap between replay and live rows shows nothing twice.
    """

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active or not user.is_staff:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        params = {key: values[-1] for key, values in parse_qs(self.scope["query_string"].decode()).items()}
        self.filters = selectors.DemandFilters.from_params(params)
        await self.channel_layer.group_add(live.DEMANDS_GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard(live.DEMANDS_GROUP, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        try:
            data = json.loads(text_data or "{}")
            after = int(data["resume_after"])
        except (ValueError, TypeError, KeyError):
            return  # not a resume request: nothing else is accepted from the page
        rows = await self._rows_after(after)
        if rows:
            await self.send(text_data=live.wrap_rows(rows))

    @database_sync_to_async
    def _rows_after(self, after: int) -> list[str]:
        demands = selectors.demands_after(filters=self.filters, after=after, limit=settings.DEMANDS_LIVE_MAX_ROWS)
        return [live.row_payload(demand)["html"] for demand in demands]

    async def demands_created(self, event):
        rows = [row["html"] for row in event["rows"] if self.filters.matches(row)]
        if rows:
            await self.send(text_data=live.wrap_rows(rows))
