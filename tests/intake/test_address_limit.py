"""A browser key is limited per client address too (issue "Hostile and careless input", item 10).

The key in a web page is public: with a per-key bucket only, one script drained it for every
visitor, and without an Origin header the browser checks did not apply at all.
"""

import json

import pytest

from demands.intake import keys
from demands.models import SourceApiKey

from ..conftest import REFERENCE

pytestmark = pytest.mark.django_db
URL = "/api/ingest/"
SHOP = "https://shop.example.com"
_ids = iter(range(1, 10_000))


@pytest.fixture(autouse=True)
def _three_per_address(settings):
    settings.INGEST_PER_ADDRESS_PER_MINUTE = 3


def post(client, key, *, address="203.0.113.7", **extra):
    body = json.dumps({**REFERENCE, "id": f"a{next(_ids)}"}, ensure_ascii=False)
    return client.post(URL, data=body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}",
                       REMOTE_ADDR=address, **extra)


@pytest.fixture
def widget_key(db):
    return keys.api_key_create(name="widget", source="web_app", allowed_origins=SHOP, rate_per_minute=600, burst=100)


def test_a_browser_key_is_refused_past_the_per_address_limit_with_retry_after(client, widget_key, delivery):
    _, plain = widget_key
    assert [post(client, plain, HTTP_ORIGIN=SHOP).status_code for _ in range(3)] == [202] * 3
    refused = post(client, plain, HTTP_ORIGIN=SHOP)
    assert refused.status_code == 429
    assert "address" in refused.json()["error"]
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert refused["Access-Control-Allow-Origin"] == SHOP  # the widget can read why
    assert len(delivery.records) == 3


def test_other_addresses_keep_their_own_allowance(client, widget_key, delivery):
    _, plain = widget_key
    for _ in range(3):
        post(client, plain, HTTP_ORIGIN=SHOP)
    assert post(client, plain, HTTP_ORIGIN=SHOP).status_code == 429
    assert post(client, plain, HTTP_ORIGIN=SHOP, address="198.51.100.2").status_code == 202


def test_a_browser_key_used_without_an_origin_header_is_counted_per_address_too(client, widget_key, delivery):
    _, plain = widget_key
    assert [post(client, plain).status_code for _ in range(4)] == [202, 202, 202, 429]


def test_a_refusal_per_address_takes_no_tokens_from_the_keys_bucket(client, widget_key, delivery):
    api_key, plain = widget_key
    for _ in range(3):
        post(client, plain, HTTP_ORIGIN=SHOP)
    tokens = SourceApiKey.objects.get(pk=api_key.pk).tokens
    for _ in range(5):
        assert post(client, plain, HTTP_ORIGIN=SHOP).status_code == 429
    assert SourceApiKey.objects.get(pk=api_key.pk).tokens == tokens


def test_any_key_used_with_an_origin_header_is_counted_per_address(client, settings, delivery):
    settings.INGEST_CORS_ALLOWED_ORIGINS = [SHOP]
    _, plain = keys.api_key_create(name="server", source="web_app", burst=100)
    assert [post(client, plain, HTTP_ORIGIN=SHOP).status_code for _ in range(4)] == [202, 202, 202, 429]


def test_a_server_key_without_origins_is_not_limited_per_address(client, delivery):
    _, plain = keys.api_key_create(name="server", source="web_app", burst=100)
    assert [post(client, plain).status_code for _ in range(6)] == [202] * 6


def test_the_per_address_window_passes(widget_key):
    api_key, _ = widget_key
    take = lambda now: keys.address_limit_take(api_key=api_key, address="203.0.113.7", now=now)  # noqa: E731
    assert [take(6000.0) for _ in range(3)] == [None] * 3
    assert take(6010.0) == pytest.approx(50.0)
    assert take(6060.0) is None


def test_zero_turns_the_per_address_limit_off(client, settings, widget_key, delivery):
    settings.INGEST_PER_ADDRESS_PER_MINUTE = 0
    _, plain = widget_key
    assert [post(client, plain, HTTP_ORIGIN=SHOP).status_code for _ in range(5)] == [202] * 5
