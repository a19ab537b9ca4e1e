"""What the monitor pushes is in each reader's language: the tick's header summary, verdict and
stat cards are rendered once per language read, and each socket gets its reader's."""

import json

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from demands.models import UserPreference
from demands.monitoring.monitor import Monitor
from demands.routing import websocket_urlpatterns

from .conftest import NOW, make_demand


def communicator(user, path):
    comm = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
    comm.scope["user"] = user
    return comm


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_chinese_socket_gets_the_tick_in_chinese_and_an_english_one_in_english(staff_user, django_user_model):
    reader = await database_sync_to_async(django_user_model.objects.create_user)(username="li", password="x", is_staff=True)
    await database_sync_to_async(UserPreference.objects.create)(user=reader, language="zh-hans")
    await sync_to_async(make_demand)(priority="urgent", received_at=NOW)
    english_list = communicator(staff_user, "/ws/demands/")
    chinese_list = communicator(reader, "/ws/demands/")
    chinese_monitoring = communicator(reader, "/ws/monitoring/")
    for comm in (english_list, chinese_list, chinese_monitoring):
        assert (await comm.connect())[0]
    rendered = []
    monitor = Monitor(clock=lambda: NOW, sample_lag=False, broadcast=True)
    original = monitor._broadcast
    await sync_to_async(lambda: (original(NOW), rendered.append(True)))()

    english = json.loads(await english_list.receive_from(timeout=3))
    assert "Backlog 1" in english["summary"] and "1 urgent" in english["summary"] and "Down" in english["summary"]
    assert "积压" not in english["summary"]
    chinese = json.loads(await chinese_list.receive_from(timeout=3))
    assert "积压" in chinese["summary"] and "Backlog" not in chinese["summary"] and "故障" in chinese["summary"]
    assert "panels" not in chinese  # other pages: the header alone
    page = json.loads(await chinese_monitoring.receive_from(timeout=3))
    assert "消费者组" in page["panels"] and "No live consumer" not in page["panels"]  # verdict reasons
    assert 'id="monitor-stats"' in page["panels"] and "Consumer lag" not in page["panels"]  # stat cards
    for comm in (english_list, chinese_list, chinese_monitoring):
        await comm.disconnect()


@pytest.mark.django_db
def test_a_tick_renders_only_the_languages_read(monkeypatch, staff_user):
    from demands import live
    from demands.monitoring import live as monitoring_live

    sent = []
    monkeypatch.setattr(monitoring_live, "_send", sent.append)
    monkeypatch.setattr(live, "languages_needed", lambda: ["zh-hans"])
    Monitor(clock=lambda: NOW, sample_lag=False, broadcast=True)._broadcast(NOW)
    (event,) = sent
    assert set(event["frame"]) == set(event["summary_frame"]) == {"zh-hans"}
    assert "积压" in json.loads(event["summary_frame"]["zh-hans"])["summary"]
