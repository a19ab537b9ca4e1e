"""Demands a rule archives on arrival never reach the live stream; the rest of the batch does."""

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from demands import live
from demands.models import Rule
from demands.pipeline.persist import persist_batch
from demands.routing import websocket_urlpatterns

from ..conftest import REFERENCE, record

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


async def test_noise_archived_on_arrival_is_not_broadcast(staff_user):
    await database_sync_to_async(Rule.objects.create)(name="noise", match_keywords="healthcheck", archive_on_arrival=True)
    page = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/demands/")
    page.scope["user"] = staff_user
    assert (await page.connect())[0]
    batch = [record({**REFERENCE, "id": "n1", "content": "healthcheck ok"}, offset=1),
             record({**REFERENCE, "id": "r1", "content": "checkout broken"}, offset=2)]
    created = (await database_sync_to_async(persist_batch)(batch)).created
    await sync_to_async(live.broadcast_demands_created)(created)
    frame = await page.receive_from(timeout=2)
    noise = next(d for d in created if d.message_id == "n1")
    real = next(d for d in created if d.message_id == "r1")
    assert f'id="demand-{real.pk}"' in frame and f'id="demand-{noise.pk}"' not in frame
    await sync_to_async(live.broadcast_demands_created)([noise])
    assert await page.receive_nothing(timeout=0.3)
    await page.disconnect()
