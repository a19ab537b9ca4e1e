"""Hostile and careless input at the pages: account enumeration at sign-in, `next` redirects that
leave https, bulk id lists without end, and a CSV export that must stream under daphne."""

import asyncio
import csv
import io

import pytest
from django.conf import settings
from django.urls import reverse

from demands import selectors, services
from demands.models import Demand, Status
from demands.pipeline.persist import persist_batch

from .conftest import REFERENCE, record

pytestmark = pytest.mark.django_db


def ingest(n: int) -> list[int]:
    created = persist_batch([record({**REFERENCE, "id": str(i)}, offset=i) for i in range(n)]).created
    return [d.pk for d in created]


# -- sign-in: one answer for every failure ---------------------------------------------------------

def login_errors(client, username, password) -> list[str]:
    response = client.post("/login/", {"username": username, "password": password})
    assert response.status_code == 200
    return list(response.context["form"].non_field_errors())


def test_a_customers_right_password_and_a_wrong_password_get_the_same_message(client, plain_user, staff_user):
    right_password_not_staff = login_errors(client, "customer", "pw-customer-123")
    wrong_password_staff = login_errors(client, "triager", "not-the-password")
    unknown_user = login_errors(client, "nobody-at-all", "whatever")
    assert right_password_not_staff == wrong_password_staff == unknown_user
    assert len(right_password_not_staff) == 1
    assert client.get("/demands/").status_code == 302


# -- next redirects stay on https -------------------------------------------------------------------

@pytest.mark.parametrize("url", ["/preferences/", "/notifications/read/"])
def test_a_next_redirect_from_an_https_request_never_downgrades_to_http(url, staff_client):
    response = staff_client.post(url, {"next": "http://testserver/demands/"}, secure=True)
    assert response.status_code == 302
    assert response["Location"] != "http://testserver/demands/"
    # Over http the same absolute target on this host is still followed, and https always is.
    assert staff_client.post(url, {"next": "http://testserver/demands/"})["Location"] == "http://testserver/demands/"
    assert staff_client.post(url, {"next": "https://testserver/demands/"}, secure=True)["Location"] == "https://testserver/demands/"


# -- bulk changes are bounded ------------------------------------------------------------------------

def test_a_bulk_post_with_more_ids_than_the_limit_changes_nothing_and_says_why(staff_client):
    [pk] = ingest(1)
    ids = [pk, *range(10_000_000, 10_000_000 + services.BULK_MAX_IDS)]
    response = staff_client.post(reverse("demands:bulk"), {"ids": ids, "status": Status.TRIAGED}, follow=True)
    texts = [str(m) for m in response.context["messages"]]
    assert any(f"at most {services.BULK_MAX_IDS}" in text for text in texts)
    assert Demand.objects.get(pk=pk).status == Status.NEW


def test_a_bulk_post_at_the_limit_is_applied(staff_client):
    pks = ingest(3)
    ids = [*pks, *range(10_000_000, 10_000_000 + services.BULK_MAX_IDS - 3)]
    staff_client.post(reverse("demands:bulk"), {"ids": ids, "status": Status.TRIAGED})
    assert set(Demand.objects.filter(pk__in=pks).values_list("status", flat=True)) == {Status.TRIAGED}


def test_the_bulk_service_refuses_an_unbounded_id_list_before_changing_anything(staff_user):
    [pk] = ingest(1)
    with pytest.raises(services.TriageError, match="at most"):
        services.demand_bulk_update(demand_ids=[pk, *range(10**7, 10**7 + services.BULK_MAX_IDS)], actor=staff_user,
                                    status=Status.TRIAGED)
    assert Demand.objects.get(pk=pk).status == Status.NEW


# -- CSV export streams under ASGI ---------------------------------------------------------------------

async def asgi_get(application, path: str, cookie: str, on_body) -> tuple[dict, list[dict]]:
    """Drive the ASGI app like daphne does: one request, then wait (no disconnect) while it answers."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"host", b"testserver"), (b"cookie", cookie.encode())],
        "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
    }
    requested, never = False, asyncio.Event()
    start, bodies = {}, []

    async def receive():
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await never.wait()

    async def send(message):
        if message["type"] == "http.response.start":
            start.update(message)
        else:
            bodies.append(message)
            on_body(message)

    await application(scope, receive, send)
    return start, bodies


@pytest.mark.django_db(transaction=True)
async def test_under_asgi_the_export_sends_rows_before_it_has_read_the_last_chunk(monkeypatch, staff_user):
    from asgiref.sync import sync_to_async
    from django.db import connections
    from django.test import Client

    from unified_msg_site.asgi import application

    await sync_to_async(ingest)(5000)
    client = Client()
    await sync_to_async(client.force_login)(staff_user)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"

    fetches = []
    real_chunk = selectors.demand_export_chunk

    def counting_chunk(**kwargs):
        fetches.append(kwargs.get("before"))
        return real_chunk(**kwargs)

    monkeypatch.setattr(selectors, "demand_export_chunk", counting_chunk)
    fetches_when_sent = []
    try:
        start, bodies = await asgi_get(application, "/demands/export.csv", cookie,
                                       lambda message: fetches_when_sent.append(len(fetches)))
    finally:  # this test's sync_to_async thread holds a connection; PostgreSQL must drop the test database
        await sync_to_async(connections.close_all)()

    assert start["status"] == 200
    text = b"".join(m.get("body", b"") for m in bodies).decode("utf-8")
    rows = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))
    assert text.startswith("\ufeff") and rows[0][:2] == ["pk", "id"] and len(rows) == 5001
    streamed = [m for m in bodies if m.get("more_body")]
    assert len(streamed) > 2  # the head, then each chunk as it is read: not one message for everything
    assert len(fetches) == 4  # 2000 + 2000 + 1000 rows, then the empty chunk that ends it
    first_rows = next(i for i, m in enumerate(bodies) if m.get("body") and not m["body"].startswith("\ufeff".encode()))
    assert fetches_when_sent[first_rows] < len(fetches)  # rows went out before the last chunk was read


def test_under_wsgi_the_export_is_still_a_complete_csv(staff_client):
    ingest(3)
    response = staff_client.get("/demands/export.csv")
    text = b"".join(response.streaming_content).decode("utf-8")
    assert text.startswith("\ufeff")
    assert len(list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))) == 4
