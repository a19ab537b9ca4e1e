import pytest
from django.urls import reverse

from demands.pipeline.persist import persist_batch
from demands.models import Demand, Status

from .conftest import REFERENCE, record

pytestmark = pytest.mark.django_db


def make_demands(n, **overrides):
    persist_batch([record({**REFERENCE, "id": str(i), **overrides}, offset=i) for i in range(n)])


@pytest.mark.parametrize("url", ["/demands/", "/demands/1/", "/rejected/"])
def test_anonymous_users_get_only_the_login_page(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_non_staff_cannot_sign_in(client, plain_user):
    response = client.post("/login/", {"username": "customer", "password": "pw-customer-123"})
    assert response.status_code == 200
    assert "no access to the dashboard" in response.content.decode()
    assert client.get("/demands/").status_code == 302


def test_non_staff_session_is_sent_to_login(client, plain_user):
    client.force_login(plain_user)
    assert client.get("/demands/")["Location"].startswith("/login/")


def test_staff_signs_in_and_lands_on_the_list(client, staff_user):
    response = client.post("/login/", {"username": "triager", "password": "pw-triager-123"}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("demands:list")


def test_list_shows_newest_first_with_live_stream_wired(staff_client):
    make_demands(3)
    html = staff_client.get("/demands/").content.decode()
    ids = list(Demand.objects.order_by("-id").values_list("pk", flat=True))
    positions = [html.index(f'id="demand-{pk}"') for pk in ids]
    assert positions == sorted(positions)
    assert 'data-ws-path="/ws/demands/?"' in html
    assert "页面加载太慢,请优化。" in html


def test_list_filters_by_status_type_source_and_search(staff_client):
    make_demands(2)
    persist_batch([record({**REFERENCE, "id": "x", "type": "log_exception", "source": "order-service", "content": "NullPointerException"}, offset=99)])
    Demand.objects.filter(message_id="0").update(status=Status.RESOLVED)
    def shown(query):
        html = staff_client.get("/demands/?" + query).content.decode()
        return sorted(d.message_id for d in Demand.objects.all() if f'id="demand-{d.pk}"' in html)
    assert shown("status=resolved") == ["0"]
    assert shown("type=log_exception") == ["x"]
    assert shown("source=web_app") == ["0", "1"]
    assert shown("search=nullpointer") == ["x"]
    assert shown("search=1") == ["1"]  # exact message id


def test_keyset_pagination_walks_every_demand_once(staff_client, settings):
    settings.DEMANDS_PAGE_SIZE = 4
    make_demands(10)
    seen, url = [], "/demands/"
    while url:
        response = staff_client.get(url)
        page = response.context["page"]
        seen += [d.pk for d in page.items]
        url = f"/demands/?before={page.next_cursor}" if page.next_cursor else None
    assert seen == sorted(Demand.objects.values_list("pk", flat=True), reverse=True)


def test_later_pages_do_not_open_a_live_stream(staff_client, settings):
    settings.DEMANDS_PAGE_SIZE = 2
    make_demands(3)
    first = Demand.objects.order_by("-id")[1]
    assert 'data-ws-path="/ws/demands/' not in staff_client.get(f"/demands/?before={first.pk}").content.decode()


def test_htmx_filter_request_gets_only_the_table(staff_client):
    make_demands(1)
    html = staff_client.get("/demands/", headers={"HX-Request": "true", "HX-Target": "demand-table"}).content.decode()
    assert html.lstrip().startswith('<div id="demand-table"')
    assert "<html" not in html


def test_detail_shows_everything_including_kafka_coordinates(staff_client):
    persist_batch([record({**REFERENCE, "trace": {"span": "abc"}}, offset=77, partition=4)])
    demand = Demand.objects.get()
    html = staff_client.get(f"/demands/{demand.pk}/").content.decode()
    for text in ("123456", "web_app", "user_feedback", "页面加载太慢,请优化。", "demand-topic", ">4<", ">77<", "span"):
        assert text in html


def test_unknown_demand_is_404(staff_client):
    assert staff_client.get("/demands/999999/").status_code == 404


def test_content_and_source_are_escaped_everywhere(staff_client):
    persist_batch([record({**REFERENCE, "content": "<script>alert(1)</script>", "evil": "<img src=x onerror=alert(2)>"})])
    persist_batch([record(b"<script>alert(3)</script>", offset=5)])
    demand = Demand.objects.get()
    for url in ("/demands/", f"/demands/{demand.pk}/", "/rejected/"):
        html = staff_client.get(url).content.decode()
        assert "<script>alert" not in html
        assert "<img src=x" not in html


def test_rejected_page_lists_reason_payload_and_position(staff_client):
    persist_batch([record(b'{"id": 1}', offset=12, partition=1)])
    html = staff_client.get("/rejected/").content.decode()
    assert "missing required field(s)" in html
    assert "demand-topic[1]@12" in html


# -- API --------------------------------------------------------------------------------------

def test_api_requires_staff(client, plain_user):
    assert client.get("/api/demands/").status_code == 401
    client.force_login(plain_user)
    assert client.get("/api/demands/").status_code == 403


def test_api_lists_demands_in_the_reference_shape(staff_client):
    make_demands(3)
    data = staff_client.get("/api/demands/").json()
    assert data["count"] == 3 and data["count_is_exact"] is True
    first = data["results"][0]
    assert {k: first[k] for k in ("id", "type", "content", "source")} == {
        "id": "2", "type": "user_feedback", "content": "页面加载太慢,请优化。", "source": "web_app"
    }
    assert first["timestamp"] == "2025-04-05T10:30:00+00:00"
    assert first["kafka"]["topic"] == "demand-topic"


def test_api_filters_search_and_paginates(staff_client):
    make_demands(5)
    data = staff_client.get("/api/demands/?limit=2").json()
    assert [r["id"] for r in data["results"]] == ["4", "3"]
    data = staff_client.get(data["next"]).json()
    assert [r["id"] for r in data["results"]] == ["2", "1"]
    assert staff_client.get("/api/demands/?search=3").json()["results"][0]["id"] == "3"
    assert staff_client.get("/api/demands/?status=resolved").json()["count"] == 0


@pytest.mark.parametrize("query", ["status=bogus", "limit=0", "limit=abc", "limit=100000", "before=x"])
def test_api_bad_parameters_get_a_clear_400(staff_client, query):
    response = staff_client.get("/api/demands/?" + query)
    assert response.status_code == 400
    assert "error" in response.json()


def test_api_detail(staff_client):
    make_demands(1)
    pk = Demand.objects.get().pk
    assert staff_client.get(f"/api/demands/{pk}/").json()["id"] == "0"
    assert staff_client.get("/api/demands/999999/").status_code == 404


def test_api_count_is_capped_instead_of_scanning_everything(staff_client, monkeypatch):
    from demands import selectors

    make_demands(5)
    real = selectors.demand_count
    monkeypatch.setattr(selectors, "demand_count", lambda *, filters, cap=None: real(filters=filters, cap=3))
    data = staff_client.get("/api/demands/?limit=2").json()  # more than one page: the count query runs
    assert data["count"] == 3 and data["count_is_exact"] is False
