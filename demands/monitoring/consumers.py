"""The monitoring websocket: header summary, chart updates and alert toasts for authenticated staff."""

from __future__ import annotations

from channels.generic.websocket import AsyncWebsocketConsumer

from . import live

CLOSE_FORBIDDEN = 4403


class MonitoringConsumer(AsyncWebsocketConsumer):
    """Every staff page connects to /ws/monitoring/; frames are JSON ({"kind": "tick"|"alert", …})."""

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active or not user.is_staff:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.channel_layer.group_add(live.MONITORING_GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard(live.MONITORING_GROUP, self.channel_name)

    async def monitoring_tick(self, event):
        await self.send(text_data=event["frame"])

    async def monitoring_alert(self, event):
        await self.send(text_data=event["frame"])
