"""Open websockets lose what the user lost: signing out, deactivation and de-staffing close them
(4403), a periodic re-check catches what no signal told, and resume requests are paced."""

import json

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.test import Client

from demands import live
from demands.consumers import CLOSE_FORBIDDEN, DemandStreamConsumer
from demands.pipeline.persist import persist_batch
from demands.routing import websocket_urlpatterns
from unified_msg_site.asgi import application

from .conftest import REFERENCE, record

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


def communicator(user, path="/ws/demands/"):
    comm = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
    comm.scope["user"] = user
    return comm


async def closed_with(comm, timeout=3) -> int | None:
    """The close code the server sent (None: it sent a frame instead)."""
    output = await comm.receive_output(timeout=timeout)
    return output.get("code") if output["type"] == "websocket.close" else None


@sync_to_async
def signed_in_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


async def session_socket(client: Client, path="/ws/demands/"):
    headers = [(b"host", b"testserver"), (b"origin", b"http://testserver"),
               (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]
    comm = WebsocketCommunicator(application, path, headers=headers)
    assert (await comm.connect(timeout=5))[0]
    return comm


async def test_signing_out_closes_that_browsers_sockets_and_leaves_the_other_browsers_open(staff_user):
    laptop, phone = await signed_in_client(staff_user), await signed_in_client(staff_user)
    laptop_list, laptop_detail = await session_socket(laptop), await session_socket(laptop, "/ws/notifications/")
    phone_list = await session_socket(phone)
    await sync_to_async(laptop.logout)()
    assert await closed_with(laptop_list) == CLOSE_FORBIDDEN
    assert await closed_with(laptop_detail) == CLOSE_FORBIDDEN
    assert await phone_list.receive_nothing(timeout=0.3)  # still signed in there
    await phone_list.disconnect()


@pytest.mark.parametrize("lost", ["is_active", "is_staff"])
async def test_a_user_saved_without_active_staff_rights_loses_every_open_socket(staff_user, lost):
    pages = [communicator(staff_user), communicator(staff_user, "/ws/monitoring/"), communicator(staff_user, "/ws/notifications/")]
    for page in pages:
        assert (await page.connect())[0]

    @database_sync_to_async
    def take_away():
        setattr(staff_user, lost, False)
        staff_user.save()

    await take_away()
    for page in pages:
        assert await closed_with(page) == CLOSE_FORBIDDEN


async def test_saving_a_user_who_keeps_their_rights_closes_nothing(staff_user):
    page = communicator(staff_user)
    assert (await page.connect())[0]

    @database_sync_to_async
    def rename():
        staff_user.first_name = "Li"
        staff_user.save()

    await rename()
    assert await page.receive_nothing(timeout=0.3)
    await page.disconnect()


async def test_open_sockets_re_check_access_periodically(staff_user, django_user_model, settings):
    settings.DEMANDS_WS_ACCESS_RECHECK_SECONDS = 0.05
    page = communicator(staff_user)
    assert (await page.connect())[0]
    # An update() sends no signal: only the re-check can notice.
    await database_sync_to_async(django_user_model.objects.filter(pk=staff_user.pk).update)(is_staff=False)
    assert await closed_with(page) == CLOSE_FORBIDDEN


async def test_a_socket_whose_last_check_is_stale_re_checks_before_it_sends(staff_user, django_user_model, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(DemandStreamConsumer, "clock", staticmethod(lambda: now[0]))
    page = communicator(staff_user)
    assert (await page.connect())[0]
    await database_sync_to_async(django_user_model.objects.filter(pk=staff_user.pk).update)(is_active=False)
    now[0] += 61  # past the re-check interval, before the periodic check ran
    created = await database_sync_to_async(persist_batch)([record(REFERENCE, offset=1)])
    await sync_to_async(live.broadcast_demands_created)(created.created)
    assert await closed_with(page) == CLOSE_FORBIDDEN  # not the new row


async def test_a_socket_whose_user_keeps_access_still_gets_rows_after_a_stale_check(staff_user, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(DemandStreamConsumer, "clock", staticmethod(lambda: now[0]))
    page = communicator(staff_user)
    assert (await page.connect())[0]
    now[0] += 61
    created = await database_sync_to_async(persist_batch)([record(REFERENCE, offset=1)])
    await sync_to_async(live.broadcast_demands_created)(created.created)
    assert f'id="demand-{created.created[0].pk}"' in await page.receive_from(timeout=3)
    await page.disconnect()


# -- resume requests ------------------------------------------------------------------------------------
async def test_resume_requests_sooner_than_the_interval_are_merged_into_one_later_answer(staff_user, monkeypatch, settings):
    """Each answer renders up to 200 rows: a flood of requests costs one answer per interval."""
    from demands import selectors

    settings.DEMANDS_WS_RESUME_INTERVAL = 0.2
    monkeypatch.setattr(DemandStreamConsumer, "clock", staticmethod(lambda: 1000.0))  # the interval never passes by itself
    answered = []
    demands_after = selectors.demands_after

    def counting(*, filters, after, limit):
        answered.append(after)
        return demands_after(filters=filters, after=after, limit=limit)

    monkeypatch.setattr(selectors, "demands_after", counting)
    stored = await database_sync_to_async(persist_batch)([record({**REFERENCE, "id": str(i)}, offset=i) for i in range(3)])
    first, second, third = sorted(d.pk for d in stored.created)
    page = communicator(staff_user)
    assert (await page.connect())[0]
    await page.send_to(text_data=json.dumps({"resume_after": second}))
    frame = await page.receive_from(timeout=3)
    assert f'id="demand-{third}"' in frame and f'id="demand-{second}"' not in frame
    for after in (second, first, second, second):  # sooner than the interval: merged, the oldest asked wins
        await page.send_to(text_data=json.dumps({"resume_after": after}))
    merged = await page.receive_from(timeout=3)
    assert f'id="demand-{second}"' in merged and f'id="demand-{third}"' in merged and f'id="demand-{first}"' not in merged
    assert await page.receive_nothing(timeout=0.5)
    assert answered == [second, first]
    await page.disconnect()
