"""One socket per page: what each page's socket is, what it carries (monitoring included), what a
broadcast renders, and the scripts' text coming from Django's catalog."""

import json
import re
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import resolve

from demands import live
from demands.models import Notification
from demands.monitoring import live as monitoring_live
from demands.pipeline.persist import persist_batch
from demands.routing import websocket_urlpatterns

from .conftest import REFERENCE, record

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = [ROOT / "static" / "js" / "app.js", ROOT / "static" / "js" / "monitoring.js", ROOT / "static" / "js" / "triage.js"]
WS_PATH = re.compile(r'data-ws-path="([^"]*)"')


def communicator(user, path="/ws/demands/"):
    comm = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
    comm.scope["user"] = user
    return comm


# -- one socket per page (what a browser would open, counted without one) --------------------------------
@pytest.mark.django_db
def test_every_staff_page_names_exactly_one_socket_and_the_scripts_open_only_that_one(staff_client, settings):
    settings.DEMANDS_PAGE_SIZE = 1
    created = persist_batch([record(REFERENCE, offset=1), record({**REFERENCE, "id": "2"}, offset=2)]).created
    expected = {
        "/demands/": "/ws/demands/?",
        "/demands/?type=user_feedback": "/ws/demands/?type=user_feedback",
        f"/demands/?before={max(d.pk for d in created)}": "/ws/notifications/",  # a later page: no list stream
        f"/demands/{created[0].pk}/": f"/ws/demands/{created[0].pk}/",
        "/monitoring/": "/ws/monitoring/",
        "/monitoring/alerts/": "/ws/notifications/",
        "/notifications/": "/ws/notifications/",
        "/groups/": "/ws/notifications/",
        "/preferences/": "/ws/notifications/",
    }
    for url, ws_path in expected.items():
        html = staff_client.get(url).content.decode()
        assert WS_PATH.findall(html) == [ws_path], url
        assert "ws-connect" not in html and "ext-ws.js" not in html, url  # htmx's ws extension would open another
        route = ws_path.lstrip("/").partition("?")[0]
        assert any(pattern.pattern.match(route) for pattern in websocket_urlpatterns), ws_path
    app, monitoring, triage = (path.read_text() for path in SCRIPTS)
    assert app.count("new WebSocket(") == 1 and "new WebSocket(" not in monitoring and "EventSource" not in monitoring
    assert "new WebSocket(" not in triage and "EventSource" not in triage


@pytest.mark.django_db
def test_the_sign_in_page_opens_no_socket(client):
    assert WS_PATH.findall(client.get("/login/").content.decode()) == []


# -- monitoring rides every page's socket ----------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_every_pages_socket_gets_the_header_summary_and_only_the_monitoring_page_the_panels(staff_user):
    demand = (await database_sync_to_async(persist_batch)([record(REFERENCE, offset=1)])).created[0]
    others = [communicator(staff_user, path) for path in ("/ws/demands/", f"/ws/demands/{demand.pk}/", "/ws/notifications/")]
    monitoring = communicator(staff_user, "/ws/monitoring/")
    for page in [*others, monitoring]:
        assert (await page.connect())[0]
    await sync_to_async(monitoring_live.broadcast_tick)(summary_html="<a>Backlog 3</a>", panels_html='<div id="monitor-panels"></div>', series={"t": [1]})
    for page in others:
        assert json.loads(await page.receive_from(timeout=2)) == {"kind": "tick", "summary": "<a>Backlog 3</a>"}
    full = json.loads(await monitoring.receive_from(timeout=2))
    assert full["panels"] == '<div id="monitor-panels"></div>' and full["series"] == {"t": [1]}

    await sync_to_async(monitoring_live._send)({"type": monitoring_live.EVENT_ALERT, "frame": '{"kind": "alert"}'})
    for page in [*others, monitoring]:
        assert json.loads(await page.receive_from(timeout=2)) == {"kind": "alert"}
        await page.disconnect()


# -- rendering: once per language read, unread counted at once ----------------------------------------------
@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_broadcasts_render_only_the_languages_the_open_pages_read(staff_user, django_user_model):
    from demands.models import UserPreference

    demand = (await database_sync_to_async(persist_batch)([record(REFERENCE, offset=1)])).created[0].to_model()
    english = communicator(staff_user)
    assert (await english.connect())[0]
    payload = await database_sync_to_async(live.row_payload)(demand)
    assert set(payload["html"]) == {"en"}
    reader = await database_sync_to_async(django_user_model.objects.create_user)(username="li", password="x", is_staff=True)
    await database_sync_to_async(UserPreference.objects.create)(user=reader, language="zh-hans")
    chinese = communicator(reader, "/ws/notifications/")
    assert (await chinese.connect())[0]
    assert set((await database_sync_to_async(live.row_payload)(demand))["html"]) == {"en", "zh-hans"}
    assert live.languages_needed_by([reader.pk, staff_user.pk]) == {reader.pk: ["zh-hans"], staff_user.pk: ["en"]}
    await english.disconnect()
    await chinese.disconnect()
    # Nobody reads: every language, so a page opening meanwhile still finds its own.
    assert set((await database_sync_to_async(live.row_payload)(demand))["html"]) == {code for code, _ in live.settings.LANGUAGES}


@pytest.mark.django_db
def test_unread_counts_take_one_query_however_many_notifications_go_out(staff_user, django_user_model, monkeypatch):
    sent = []
    monkeypatch.setattr(live, "group_send", lambda group, event: sent.append((group, event)))
    other = django_user_model.objects.create_user(username="dev", password="x", is_staff=True)
    demand = persist_batch([record(REFERENCE, offset=1)]).created[0]

    def notify(n):
        ids = [Notification.objects.create(user=user, demand_id=demand.pk, text=f"#{demand.pk}").pk
               for user in (staff_user, other) for _ in range(n)]
        sent.clear()
        with CaptureQueriesContext(connection) as queries:
            live.broadcast_notifications(ids)
        return len(queries)

    assert notify(1) == notify(4)  # 2 then 8 notifications, the same queries
    counts = {group: re.search(r'class="count">(\d+)<', event["html"]["en"]).group(1) for group, event in sent}
    assert counts == {live.user_group(staff_user.pk): "5", live.user_group(other.pk): "5"}
    assert len(sent) == 8


# -- the scripts' text ------------------------------------------------------------------------------------------
FORMER_LITERALS = [
    "Live", "Reconnecting…", " selected:", "Arrivals", "Resolutions", "Rejections", "New", "Triaged",
    "In progress", "Urgent", "Lag (messages)",
]
CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]")
GETTEXT_CALL = re.compile(r'\b(?:n?gettext|pgettext)\(\s*"(?:[^"\\]|\\.)*"(?:\s*,\s*"(?:[^"\\]|\\.)*")*')
STRING = re.compile(r'"((?:[^"\\]|\\.)*)"|\'((?:[^\'\\]|\\.)*)\'')


def _without_comments(source: str) -> str:
    return re.sub(r"^\s*//.*$", "", source, flags=re.M)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_the_scripts_hold_no_human_text_of_their_own(script):
    source = _without_comments(script.read_text())
    assert not CJK.findall(source)
    outside_gettext = GETTEXT_CALL.sub("gettext()", source)
    literals = {a or b for a, b in STRING.findall(outside_gettext)}
    assert {text for text in literals for former in FORMER_LITERALS if former in text} == set()


@pytest.mark.django_db
def test_every_string_the_scripts_ask_for_is_translated_in_the_catalog(client):
    asked = set()
    for script in SCRIPTS:
        for call in GETTEXT_CALL.findall(script.read_text()):
            asked.add(json.loads(STRING.search(call).group(0)))
    assert {"Connected", "Reconnecting…", "Arrivals", "%(count)s selected:", "%(count)s new — show"} <= asked
    assert resolve("/jsi18n/").url_name == "javascript-catalog"
    catalog = client.get("/jsi18n/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    missing = {text for text in asked if json.dumps(text) + ": " not in catalog}  # the catalog holds translated ones only
    assert missing == set()
    assert "\\u5df2\\u8fde\\u63a5" in catalog  # 已连接, "Connected"
