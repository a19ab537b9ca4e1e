"""The websocket stream: who may connect, what each page receives, and catch-up after a drop."""

import json

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from demands import live, services
from demands.pipeline.persist import persist_batch
from demands.models import Demand, Team
from demands.routing import websocket_urlpatterns

from .conftest import REFERENCE, record

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


def communicator(user, query="", path="/ws/demands/"):
    comm = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"{path}?{query}")
    comm.scope["user"] = user
    return comm


async def store(*messages):
    result = await database_sync_to_async(persist_batch)([record(m, offset=i) for i, m in enumerate(messages)])
    return result.created


async def test_anonymous_and_non_staff_are_refused(django_user_model):
    comm = communicator(AnonymousUser())
    connected, code = await comm.connect()
    assert not connected and code == 4403
    user = await database_sync_to_async(django_user_model.objects.create_user)(username="u", password="x", is_staff=False)
    connected, code = await communicator(user).connect()
    assert not connected


async def test_staff_receives_a_new_batch_as_rows_for_the_top_of_the_table(staff_user):
    comm = communicator(staff_user)
    connected, _ = await comm.connect()
    assert connected
    created = await store(REFERENCE, {**REFERENCE, "id": "2"})
    await sync_to_async(live.broadcast_demands_created)(created)
    frame = await comm.receive_from(timeout=2)
    assert frame.startswith('<tbody id="demand-rows">')
    pks = sorted((d.pk for d in created), reverse=True)
    assert frame.index(f'id="demand-{pks[0]}"') < frame.index(f'id="demand-{pks[1]}"')
    assert 'class="is-new"' in frame
    await comm.disconnect()


async def test_each_page_receives_only_rows_matching_its_filters(staff_user):
    errors_page = communicator(staff_user, "type=log_exception")
    all_page = communicator(staff_user)
    await errors_page.connect()
    await all_page.connect()
    created = await store(REFERENCE, {**REFERENCE, "id": "e1", "type": "log_exception"})
    await sync_to_async(live.broadcast_demands_created)(created)
    errors_frame = await errors_page.receive_from(timeout=2)
    all_frame = await all_page.receive_from(timeout=2)
    exception_pk = next(d.pk for d in created if d.type == "log_exception")
    feedback_pk = next(d.pk for d in created if d.type == "user_feedback")
    assert f"demand-{exception_pk}" in errors_frame and f"demand-{feedback_pk}" not in errors_frame
    assert f"demand-{exception_pk}" in all_frame and f"demand-{feedback_pk}" in all_frame
    assert await errors_page.receive_nothing(timeout=0.2)
    await errors_page.disconnect()
    await all_page.disconnect()


async def test_search_filter_applies_to_live_rows(staff_user):
    page = communicator(staff_user, "search=TIMEOUT")
    await page.connect()
    created = await store(REFERENCE, {**REFERENCE, "id": "t", "content": "Gateway timeout on /api/pay"})
    await sync_to_async(live.broadcast_demands_created)(created)
    frame = await page.receive_from(timeout=2)
    assert "Gateway timeout" in frame and "页面加载太慢" not in frame
    await page.disconnect()


async def test_reconnecting_page_gets_everything_it_missed_and_nothing_it_has(staff_user):
    first = await store(REFERENCE)
    newest_shown = first[0].pk
    missed = await store({**REFERENCE, "id": "m1"}, {**REFERENCE, "id": "m2"})
    comm = communicator(staff_user)
    await comm.connect()
    await comm.send_to(text_data=json.dumps({"resume_after": newest_shown}))
    frame = await comm.receive_from(timeout=2)
    for demand in missed:
        assert f'id="demand-{demand.pk}"' in frame
    assert f'id="demand-{newest_shown}"' not in frame
    await comm.disconnect()


async def test_resume_with_nothing_missed_sends_nothing(staff_user):
    created = await store(REFERENCE)
    comm = communicator(staff_user)
    await comm.connect()
    await comm.send_to(text_data=json.dumps({"resume_after": created[0].pk}))
    assert await comm.receive_nothing(timeout=0.2)
    await comm.send_to(text_data="not json")
    assert await comm.receive_nothing(timeout=0.2)
    await comm.disconnect()


async def test_live_rows_escape_content(staff_user):
    comm = communicator(staff_user)
    await comm.connect()
    created = await store({**REFERENCE, "content": "<img src=x onerror=alert(1)>"})
    await sync_to_async(live.broadcast_demands_created)(created)
    frame = await comm.receive_from(timeout=2)
    assert "<img src=x" not in frame and "&lt;img src=x" in frame
    await comm.disconnect()


@database_sync_to_async
def change_status(pk, status, actor):
    return services.demand_change_status(demand=Demand.objects.get(pk=pk), status=status, actor=actor)


async def test_a_triage_change_updates_the_row_in_place_on_list_pages(staff_user):
    created = await store(REFERENCE)
    page = communicator(staff_user)
    await page.connect()
    await change_status(created[0].pk, "triaged", staff_user)
    frame = await page.receive_from(timeout=2)
    assert frame.startswith('<tbody id="demand-updates">')
    assert f'id="demand-{created[0].pk}"' in frame and "status-triaged" in frame
    await page.disconnect()


async def test_a_row_that_no_longer_matches_a_page_is_removed_from_it(staff_user):
    created = await store(REFERENCE)
    new_only = communicator(staff_user, "status=new")
    await new_only.connect()
    await change_status(created[0].pk, "triaged", staff_user)
    frame = await new_only.receive_from(timeout=2)
    assert f'<tr id="demand-{created[0].pk}" data-id="{created[0].pk}" data-remove>' in frame
    await new_only.disconnect()


async def test_detail_page_gets_the_new_summary_and_history_entry(staff_user):
    created = await store(REFERENCE)
    pk = created[0].pk
    detail = communicator(staff_user, path=f"/ws/demands/{pk}/")
    other = communicator(staff_user, path="/ws/demands/999999/")
    assert (await detail.connect())[0] and (await other.connect())[0]
    await change_status(pk, "in_progress", staff_user)
    frame = await detail.receive_from(timeout=2)
    assert 'id="demand-summary"' in frame and "status-in_progress" in frame
    assert '<ol id="history" data-append>' in frame and 'id="event-' in frame
    assert await other.receive_nothing(timeout=0.2)
    await detail.disconnect()
    await other.disconnect()


async def test_assignee_is_notified_live_on_every_page(staff_user, django_user_model):
    assignee = await database_sync_to_async(django_user_model.objects.create_user)(username="dev", password="x", is_staff=True)
    created = await store(REFERENCE)
    elsewhere = communicator(assignee, path="/ws/notifications/")
    bystander = communicator(staff_user, path="/ws/notifications/")
    await elsewhere.connect()
    await bystander.connect()

    @database_sync_to_async
    def assign():
        services.demand_assign(demand=Demand.objects.get(pk=created[0].pk), assignee=assignee, actor=staff_user)

    await assign()
    frame = await elsewhere.receive_from(timeout=2)
    assert 'class="toast"' in frame and f"#{created[0].pk}" in frame
    assert '<span id="notification-count" class="count">1</span>' in frame
    assert await bystander.receive_nothing(timeout=0.2)  # the actor is not notified of their own change
    await elsewhere.disconnect()
    await bystander.disconnect()


async def test_my_teams_page_sees_only_its_teams_rows(staff_user):
    @database_sync_to_async
    def setup():
        team = Team.objects.create(name="Payments")
        team.members.add(staff_user)
        Team.objects.create(name="Other")
        return team

    team = await setup()
    page = communicator(staff_user, "team=mine")
    await page.connect()
    created = await store(REFERENCE, {**REFERENCE, "id": "2"})

    @database_sync_to_async
    def assign_first():
        services.demand_assign(demand=Demand.objects.get(pk=created[0].pk), team=team, actor=staff_user)

    await assign_first()
    frame = await page.receive_from(timeout=2)
    assert f'id="demand-{created[0].pk}"' in frame and "data-remove" not in frame
    await page.disconnect()


async def test_a_burst_sends_a_page_of_rows_and_asks_the_page_to_fetch_the_rest(staff_user, settings):
    settings.DEMANDS_LIVE_BATCH_ROWS = 2
    page = communicator(staff_user, "type=log_exception")
    await page.connect()
    created = await store(
        {**REFERENCE, "id": "e1", "type": "log_exception"}, {**REFERENCE, "id": "f1"}, {**REFERENCE, "id": "f2"}
    )
    await sync_to_async(live.broadcast_demands_created)(created)
    frame = await page.receive_from(timeout=2)
    # The only matching demand was not among the two rendered: the frame still says there is more.
    assert frame == '<tbody id="demand-rows" data-more></tbody>'
    exception = next(d for d in created if d.type == "log_exception")
    await page.send_to(text_data=json.dumps({"resume_after": exception.pk - 1}))
    assert f'id="demand-{exception.pk}"' in await page.receive_from(timeout=2)
    await page.disconnect()


async def test_live_rows_arrive_in_each_readers_language(staff_user, django_user_model):
    from demands.models import UserPreference

    reader = await database_sync_to_async(django_user_model.objects.create_user)(username="li", password="x", is_staff=True)
    await database_sync_to_async(UserPreference.objects.create)(user=reader, language="zh-hans")
    chinese, english = communicator(reader), communicator(staff_user)
    await chinese.connect()
    await english.connect()
    created = await store(REFERENCE)
    await sync_to_async(live.broadcast_demands_created)(created)
    assert "新建" in await chinese.receive_from(timeout=2)
    assert ">New<" in await english.receive_from(timeout=2)
    await chinese.disconnect()
    await english.disconnect()


async def test_without_a_preference_the_browsers_language_is_used(staff_user):
    page = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/demands/", headers=[(b"accept-language", b"zh-CN,zh;q=0.9")])
    page.scope["user"] = staff_user
    await page.connect()
    created = await store(REFERENCE)
    await sync_to_async(live.broadcast_demands_created)(created)
    assert "新建" in await page.receive_from(timeout=2)
    await page.disconnect()


# -- one fan-out per process (demands.consumers.ListFanout) ------------------------------------------
def _fanout():
    import asyncio

    from channels.layers import get_channel_layer

    from demands.consumers import ListFanout

    return ListFanout._instances.get((asyncio.get_running_loop(), get_channel_layer()))


async def test_list_pages_share_one_subscription_that_ends_with_the_last_page(staff_user):
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    pages = [communicator(staff_user), communicator(staff_user, "type=log_exception"), communicator(staff_user)]
    for page in pages:
        assert (await page.connect())[0]
    # The process is in the demands group once, not once per page.
    assert len(layer.groups[live.DEMANDS_GROUP]) == 1
    assert len(_fanout().sockets) == 3
    for page in pages:
        await page.disconnect()
    assert live.DEMANDS_GROUP not in layer.groups and _fanout() is None
    page = communicator(staff_user)  # a page opened afterwards subscribes again
    await page.connect()
    created = await store(REFERENCE)
    await sync_to_async(live.broadcast_demands_created)(created)
    assert f'id="demand-{created[0].pk}"' in await page.receive_from(timeout=2)
    await page.disconnect()


async def test_pages_alike_share_frames_and_each_page_still_gets_its_filter_and_language(staff_user, django_user_model):
    from demands.models import UserPreference

    reader = await database_sync_to_async(django_user_model.objects.create_user)(username="li", password="x", is_staff=True)
    await database_sync_to_async(UserPreference.objects.create)(user=reader, language="zh-hans")
    english = [communicator(staff_user) for _ in range(3)]
    chinese = [communicator(reader) for _ in range(2)]
    errors_en, errors_zh = communicator(staff_user, "type=log_exception"), communicator(reader, "type=log_exception")
    everyone = [*english, *chinese, errors_en, errors_zh]
    for page in everyone:
        await page.connect()
    created = await store(REFERENCE, {**REFERENCE, "id": "e1", "type": "log_exception"})
    await sync_to_async(live.broadcast_demands_created)(created)
    exception_pk = next(d.pk for d in created if d.type == "log_exception")
    feedback_pk = next(d.pk for d in created if d.type == "user_feedback")
    frames = {id(page): await page.receive_from(timeout=2) for page in everyone}
    assert len({frames[id(p)] for p in english}) == 1 and len({frames[id(p)] for p in chinese}) == 1
    for page in english:
        assert ">New<" in frames[id(page)] and f"demand-{feedback_pk}" in frames[id(page)]
    for page in chinese:
        assert "新建" in frames[id(page)] and f"demand-{exception_pk}" in frames[id(page)]
    assert ">New<" in frames[id(errors_en)] and "新建" in frames[id(errors_zh)]
    for page in (errors_en, errors_zh):
        assert f"demand-{exception_pk}" in frames[id(page)] and f"demand-{feedback_pk}" not in frames[id(page)]
    for page in everyone:
        assert await page.receive_nothing(timeout=0.1)
        await page.disconnect()


async def test_broadcasts_waiting_for_the_next_round_go_out_as_one_frame_per_page(staff_user):
    """While a round of sends is going out, new broadcasts queue up; the next round merges the
    new rows of consecutive broadcasts (newest first, `more` if any had more) and keeps each
    change in order after them."""
    all_page, errors_page = communicator(staff_user), communicator(staff_user, "type=log_exception")
    await all_page.connect()
    await errors_page.connect()
    first = await store(REFERENCE)
    second = await store({**REFERENCE, "id": "e1", "type": "log_exception"}, {**REFERENCE, "id": "f2"})
    rows = await database_sync_to_async(lambda ds: [live.row_payload(d.to_model() if hasattr(d, "to_model") else d) for d in ds])(
        [*first, *second]
    )
    by_pk = {row["id"]: row for row in rows}
    changed = {**by_pk[first[0].pk], "status": "triaged"}
    fanout = _fanout()
    fanout.pending.extend([
        {"type": live.EVENT_DEMANDS_CREATED, "rows": [by_pk[first[0].pk]], "more": False},
        {"type": live.EVENT_DEMANDS_CREATED, "rows": sorted((by_pk[d.pk] for d in second), key=lambda r: -r["id"]), "more": True},
        {"type": live.EVENT_DEMANDS_CHANGED, "rows": [changed]},
    ])
    await fanout._send()
    merged = await all_page.receive_from(timeout=2)
    assert merged.startswith('<tbody id="demand-rows" data-more>')
    positions = [merged.index(f'id="demand-{pk}"') for pk in sorted(by_pk, reverse=True)]
    assert positions == sorted(positions)  # newest first across both broadcasts
    update = await all_page.receive_from(timeout=2)
    assert update.startswith('<tbody id="demand-updates">') and f'id="demand-{first[0].pk}"' in update
    assert "data-remove" not in update
    exception_pk = next(d.pk for d in second if d.type == "log_exception")
    errors_frame = await errors_page.receive_from(timeout=2)
    assert errors_frame.startswith('<tbody id="demand-rows" data-more>')
    assert f'id="demand-{exception_pk}"' in errors_frame and errors_frame.count("<tr ") == 1
    assert f'data-id="{first[0].pk}" data-remove' in await errors_page.receive_from(timeout=2)
    for page in (all_page, errors_page):
        assert await page.receive_nothing(timeout=0.1)
        await page.disconnect()


async def test_broadcast_handlers_skip_the_database_clean_up(staff_user, monkeypatch):
    """channels closes stale database connections in a thread before every handler; the live
    handlers use no database, so they skip that hop (with 1,000 sockets, 50,000 hops a second)."""
    import channels.consumer

    calls = []

    async def counting():
        calls.append(1)

    monkeypatch.setattr(channels.consumer, "aclose_old_connections", counting)
    page = communicator(staff_user, path="/ws/notifications/")
    list_page = communicator(staff_user)
    await page.connect()
    await list_page.connect()
    assert calls  # websocket.connect goes through channels' dispatch, clean-up included
    calls.clear()
    from channels.layers import get_channel_layer

    await get_channel_layer().group_send(live.user_group(staff_user.pk), {"type": live.EVENT_USER_NOTIFY, "html": {"en": "<p>hi</p>"}})
    assert await page.receive_from(timeout=2) == "<p>hi</p>"
    assert await list_page.receive_from(timeout=2) == "<p>hi</p>"
    assert calls == []
    await list_page.send_to(text_data=json.dumps({"resume_after": 0}))  # websocket.receive: channels' dispatch, as before
    await list_page.receive_nothing(timeout=0.2)
    assert calls
    await page.disconnect()
    await list_page.disconnect()
