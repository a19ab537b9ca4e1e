"""HTML/JS in anything a source or a person can type is shown escaped everywhere it appears:
list, detail, groups, rejected, notifications, websocket frames, admin; CSV cells are defused."""

import csv
import io
import json

import pytest
from asgiref.sync import sync_to_async
from django.apps import apps
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.test import Client

from demands import live, selectors, services
from demands.pipeline.persist import persist_batch
from demands.models import Demand, DemandEvent, Rule, SavedView, Team
from demands.routing import websocket_urlpatterns
from demands.views import csv_safe

from .conftest import REFERENCE, record, role

XSS = '<script>alert("xss")</script><img src=x onerror=alert(1)>'
ESCAPED = "&lt;script&gt;alert("


def assert_escaped(html: str, *, shown: bool = True) -> None:
    assert "<script>alert" not in html
    assert "<img src=x onerror" not in html
    if shown:
        assert ESCAPED in html, "the text should still be visible, escaped"


def hostile_demand() -> Demand:
    """A demand whose every free-text field carries markup: content, tags and extra through the
    real ingest path; type and source (which the parser restricts) and the category written
    directly, as an admin edit or a future ingest path could."""
    message = {**REFERENCE, "content": f"{XSS} page slow", "tags": [XSS, "ok"], "priority": XSS,
               "extra": {"note": XSS, XSS: [XSS]}}
    demand = persist_batch([record(message, offset=1)]).created[0]
    Demand.objects.filter(pk=demand.pk).update(type=XSS[:64], source=XSS[:64], category=XSS[:64])
    return Demand.objects.get(pk=demand.pk)


@pytest.fixture
def triager(django_user_model):
    user = django_user_model.objects.create_user(username="triager", password=None, is_staff=True)
    user.groups.add(role("Triagers"))
    return user


@pytest.fixture
def hostile_world(django_user_model, triager):
    demand = hostile_demand()
    team = Team.objects.create(name=XSS[:100])
    team.members.add(triager)  # so the triager is notified, with the content in the text
    boss = django_user_model.objects.create_superuser(username="boss", password=None)
    marked = django_user_model.objects.create_user(username="u" + XSS[:100], password=None, is_staff=True)
    services.demand_assign(demand=demand, assignee=marked, team=team, actor=boss)
    services.demand_comment(demand=demand, body=f"{XSS} see https://example.com/?q=<b>x</b> and javascript:alert(1)", actor=boss)
    rule = Rule.objects.create(name=XSS[:100], set_category="c", match_keywords="page")
    persist_batch([record({**REFERENCE, "id": "ruled", "content": "page two"}, offset=2)])
    SavedView.objects.create(user=triager, name=XSS[:100], query="status=new")
    persist_batch([record(XSS.encode(), offset=3, key=XSS.encode())])  # a rejected message
    return {"demand": demand, "rule": rule, "team": team}


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/demands/", "detail", "/groups/", "/rejected/", "/notifications/", "ruled",
                                 "/demands/?search=" + XSS, "/demands/?tag=" + XSS + "&type=" + XSS])
def test_pages_show_markup_as_text(hostile_world, triager, url):
    demand = hostile_world["demand"]
    if url == "detail":
        url = f"/demands/{demand.pk}/"
    elif url == "ruled":
        url = f"/demands/{Demand.objects.get(message_id='ruled').pk}/"
    response = signed_in(triager).get(url)
    assert response.status_code == 200
    assert_escaped(response.content.decode())


@pytest.mark.django_db
def test_detail_page_escapes_every_field_it_shows(hostile_world, triager):
    demand = hostile_world["demand"]
    html = signed_in(triager).get(f"/demands/{demand.pk}/").content.decode()
    assert_escaped(html)
    # Content, tags, type, source, category, extra (JSON), comment, assignee, team, history values.
    assert html.count(ESCAPED) >= 8
    assert 'href="javascript:' not in html
    assert "<b>x</b>" not in html


@pytest.mark.django_db
def test_rule_names_in_history_are_escaped(hostile_world, triager):
    ruled = Demand.objects.get(message_id="ruled")
    assert [e.rule for e in selectors.demand_history(demand=ruled)][:1] == [hostile_world["rule"]]
    assert_escaped(signed_in(triager).get(f"/demands/{ruled.pk}/").content.decode())


@pytest.mark.django_db
@pytest.mark.parametrize("model", ["demand", "demandevent", "demandgroup", "notification", "rejectedmessage",
                                   "team", "rule", "savedview"])
def test_admin_lists_and_forms_escape_markup(hostile_world, django_user_model, model):
    admin_user = django_user_model.objects.create_superuser(username="root", password=None)
    client = signed_in(admin_user)
    listing = client.get(f"/admin/demands/{model}/")
    assert listing.status_code == 200
    assert_escaped(listing.content.decode(), shown=model != "rejectedmessage")  # its list shows reasons only
    obj = apps.get_model("demands", model).objects.order_by("pk").first()
    change = client.get(f"/admin/demands/{model}/{obj.pk}/change/")
    assert change.status_code == 200
    assert_escaped(change.content.decode())


def communicator(user, path):
    comm = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
    comm.scope["user"] = user
    return comm


@pytest.mark.django_db(transaction=True)
async def test_websocket_frames_escape_markup(django_user_model):
    actor = await sync_to_async(lambda: django_user_model.objects.create_superuser(username="root", password=None))()
    assignee = await sync_to_async(lambda: django_user_model.objects.create_user(
        username="assignee", password=None, is_staff=True))()
    demand = await sync_to_async(hostile_demand)()
    pages = [communicator(assignee, "/ws/demands/"), communicator(assignee, f"/ws/demands/{demand.pk}/"),
             communicator(assignee, "/ws/notifications/")]
    for page in pages:
        assert (await page.connect())[0]
    await sync_to_async(live.broadcast_demands_created)([demand])
    created = await pages[0].receive_from(timeout=2)
    assert_escaped(created)
    # A triage change: the list row, the detail summary + history, and the assignee's toast.
    await sync_to_async(lambda: services.demand_assign(demand=demand, assignee=assignee, actor=actor))()
    frames = [await page.receive_from(timeout=2) for page in pages]
    for frame in frames:
        assert_escaped(frame)
    for page in pages:
        await page.disconnect()


# -- CSV ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1", '=HYPERLINK("http://x","y")',
                                   "=cmd|' /C calc'!A0"])
def test_csv_safe_defuses_cells_a_spreadsheet_would_run(value):
    assert csv_safe(value) == "'" + value


@pytest.mark.parametrize(("value", "expected"), [("plain", "plain"), ("", ""), (None, ""), (42, "42"),
                                                   ("页面 =1", "页面 =1"), ("a=b", "a=b")])
def test_csv_safe_leaves_ordinary_values_alone(value, expected):
    assert csv_safe(value) == expected


@pytest.mark.django_db
def test_csv_export_defuses_formulas_in_every_column(triager):
    message = {**REFERENCE, "id": "=1+2", "content": '=HYPERLINK("http://evil.example","click")',
               "tags": ["+tag", "@x"], "type": "-t", "source": "-s"}
    persist_batch([record(message, offset=1)])
    response = signed_in(triager).get("/demands/export.csv")
    body = b"".join(response.streaming_content).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(body)))
    header, row = rows[0], rows[1]
    cells = dict(zip(header, row))
    for column in ("id", "content", "tags", "type", "source"):
        assert cells[column].startswith("'"), column
    assert all(not cell.startswith(("=", "+", "-", "@")) for cell in row)
    assert cells["content"] == "'" + message["content"]


@pytest.mark.django_db
def test_api_returns_markup_as_json_data_not_html(triager):
    demand = persist_batch([record({**REFERENCE, "content": XSS}, offset=1)]).created[0]
    response = signed_in(triager).get(f"/api/demands/{demand.pk}/")
    assert response["Content-Type"].startswith("application/json")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert json.loads(response.content)["content"] == XSS
