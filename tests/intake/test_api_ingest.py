"""POST /api/ingest/: key auth, source binding, validation, limits, CORS and the produce-failure path."""

import json

import pytest
from django.test import Client

from demands import kafka
from demands.intake import keys
from demands.pipeline.persist import persist_batch
from demands.models import Demand, SourceApiKey

from ..conftest import REFERENCE, record

pytestmark = pytest.mark.django_db
URL = "/api/ingest/"


def post(client, body, key=None, *, header="bearer", **extra):
    if key is not None:
        if header == "bearer":
            extra["HTTP_AUTHORIZATION"] = f"Bearer {key}"
        else:
            extra["HTTP_X_API_KEY"] = key
    data = body if isinstance(body, (bytes, str)) else json.dumps(body, ensure_ascii=False)
    return client.post(URL, data=data, content_type="application/json", **extra)


# -- the happy path --------------------------------------------------------------------------------

def test_reference_message_is_produced_keyed_by_source_and_id_and_answered_202(client, issued_key, delivery):
    _, plain = issued_key
    response = post(client, REFERENCE, plain)
    assert response.status_code == 202
    assert response.json() == {"accepted": [{"index": 0, "id": "123456"}], "rejected": []}
    [(topic, key, value, headers)] = delivery.records
    assert topic == "demand-topic"
    assert key == b"web_app:123456"
    assert json.loads(value) == REFERENCE
    assert dict(headers)["ingest.via"] == b"http"


def test_what_is_produced_becomes_the_demand_the_consumer_stores(client, issued_key, delivery):
    post(client, REFERENCE, issued_key[1])
    persist_batch([record(delivery.values[0], offset=7)])
    demand = Demand.objects.get()
    assert (demand.source, demand.message_id, demand.content) == ("web_app", "123456", "页面加载太慢,请优化。")


def test_x_api_key_header_is_accepted_too(client, issued_key, delivery):
    assert post(client, REFERENCE, issued_key[1], header="x-api-key").status_code == 202


def test_source_is_filled_from_the_key_when_the_body_has_none(client, issued_key, delivery):
    body = {k: v for k, v in REFERENCE.items() if k != "source"}
    assert post(client, body, issued_key[1]).status_code == 202
    assert json.loads(delivery.values[0])["source"] == "web_app"
    assert delivery.records[0][1] == b"web_app:123456"


def test_no_csrf_token_and_no_session_are_needed(issued_key, delivery):
    strict = Client(enforce_csrf_checks=True)
    response = post(strict, REFERENCE, issued_key[1])
    assert response.status_code == 202
    assert "sessionid" not in response.cookies


def test_path_without_trailing_slash_works_without_a_redirect(client, issued_key, delivery):
    response = client.post("/api/ingest", data=json.dumps(REFERENCE), content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {issued_key[1]}")
    assert response.status_code == 202


# -- authentication and the source binding ----------------------------------------------------------

def test_missing_key_is_401_with_a_reason(client, delivery):
    response = post(client, REFERENCE)
    assert response.status_code == 401
    assert "missing API key" in response.json()["error"]
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert delivery.records == []


@pytest.mark.parametrize("mangle", [
    lambda key: key[:-4] + "AAAA",          # right prefix, wrong secret
    lambda key: "umk_00000000_" + key[13:],  # unknown prefix
    lambda key: "not-a-key",
])
def test_wrong_key_is_401_unknown_key(client, issued_key, delivery, mangle):
    response = post(client, REFERENCE, mangle(issued_key[1]))
    assert response.status_code == 401
    assert response.json()["error"] == "unknown API key"
    assert delivery.records == []


def test_revoked_key_is_401_and_says_so(client, issued_key, delivery):
    api_key, plain = issued_key
    keys.api_key_revoke(api_key=api_key)
    response = post(client, REFERENCE, plain)
    assert response.status_code == 401
    assert "revoked" in response.json()["error"]
    assert delivery.records == []


def test_body_claiming_another_source_is_403_and_nothing_is_produced(client, issued_key, delivery):
    body = [REFERENCE, {**REFERENCE, "id": "2", "source": "billing"}]
    response = post(client, body, issued_key[1])
    assert response.status_code == 403
    data = response.json()
    assert "only send demands with source 'web_app'" in data["error"]
    assert data["items"] == [{"index": 1, "source": "billing"}]
    assert delivery.records == []


def test_key_is_stored_hashed_and_never_in_plain(issued_key):
    api_key, plain = issued_key
    row = SourceApiKey.objects.filter(pk=api_key.pk).values().get()
    assert plain not in json.dumps(row, default=str)
    assert row["key_hash"] == keys._hash_key(plain)
    assert plain.startswith(f"umk_{row['prefix']}_")


def test_use_is_recorded_on_the_key(client, issued_key, delivery):
    post(client, REFERENCE, issued_key[1])
    assert SourceApiKey.objects.get().last_used_at is not None


# -- validation and bounds ------------------------------------------------------------------------

def test_array_answers_accepted_ids_and_rejected_items_with_reasons(client, issued_key, delivery):
    body = [
        REFERENCE,
        {**REFERENCE, "id": "no-zone", "timestamp": "2025-04-05T10:30:00"},
        "just a string",
        {**REFERENCE, "id": "2", "priority": "P1", "tags": "a,b"},
    ]
    response = post(client, body, issued_key[1])
    assert response.status_code == 202
    data = response.json()
    assert data["accepted"] == [{"index": 0, "id": "123456"}, {"index": 3, "id": "2"}]
    assert [(item["index"], item["id"]) for item in data["rejected"]] == [(1, "no-zone"), (2, None)]
    assert "has no time zone" in data["rejected"][0]["reason"]
    assert "must be a JSON object" in data["rejected"][1]["reason"]
    assert [key for _topic, key, _value, _headers in delivery.records] == [b"web_app:123456", b"web_app:2"]


def test_request_with_no_valid_demand_is_422_with_reasons_and_produces_nothing(client, issued_key, delivery):
    response = post(client, [{**REFERENCE, "content": ""}, {**REFERENCE, "id": 5}], issued_key[1])
    assert response.status_code == 422
    reasons = [item["reason"] for item in response.json()["rejected"]]
    assert reasons == ["field 'content' is empty", "field 'id' must be a string, got a number"]
    assert delivery.records == []


@pytest.mark.parametrize("body, reason", [
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    (b"42", "must be a demand"),
    (b"[]", "empty array"),
])
def test_body_that_is_not_a_demand_or_array_is_400(client, issued_key, delivery, body, reason):
    response = post(client, body, issued_key[1])
    assert response.status_code == 400
    assert reason in response.json()["error"]


def test_too_many_demands_in_one_request_is_413(client, issued_key, delivery, settings):
    settings.INGEST_MAX_ITEMS = 3
    response = post(client, [{**REFERENCE, "id": str(i)} for i in range(4)], issued_key[1])
    assert response.status_code == 413
    assert "limit is 3" in response.json()["error"]
    assert delivery.records == []


def test_oversized_body_is_413(client, issued_key, delivery, settings):
    settings.INGEST_MAX_BODY_BYTES = 200
    response = post(client, {**REFERENCE, "content": "x" * 300}, issued_key[1])
    assert response.status_code == 413
    assert delivery.records == []


def test_other_methods_are_405(client):
    assert client.get(URL).status_code == 405


# -- Kafka failures -------------------------------------------------------------------------------

def test_producer_failure_is_503_never_a_silent_accept(client, issued_key, delivery):
    delivery.fail_with = "Local: Message timed out"
    response = post(client, [REFERENCE, {**REFERENCE, "id": "bad", "timestamp": "yesterday"}], issued_key[1])
    assert response.status_code == 503
    data = response.json()
    assert data["accepted"] == []
    assert "Message timed out" in data["error"] and "retrying it is safe" in data["error"]
    assert response["Retry-After"]


class SilentProducer:
    """Takes records and never confirms them, like a broker that is gone."""

    def __init__(self):
        self.produced = 0

    def produce(self, topic, value=None, key=None, headers=None, on_delivery=None):
        self.produced += 1

    def poll(self, timeout):
        return 0


class FailingProducer(SilentProducer):
    def __init__(self, error):
        super().__init__()
        self.error = error
        self.callbacks = []

    def produce(self, topic, value=None, key=None, headers=None, on_delivery=None):
        self.callbacks.append(on_delivery)

    def poll(self, timeout):
        while self.callbacks:
            self.callbacks.pop()(self.error, None)
        return 0


def test_delivery_that_is_never_confirmed_raises_instead_of_returning():
    with pytest.raises(kafka.DeliveryFailed, match="did not confirm 2 of 2"):
        kafka.deliver([("t", None, b"1", []), ("t", None, b"2", [])], producer=SilentProducer(), timeout=-1)


def test_delivery_error_reported_by_the_broker_raises():
    with pytest.raises(kafka.DeliveryFailed, match="refused 1 of 1.*UNKNOWN_TOPIC"):
        kafka.deliver([("t", None, b"1", [])], producer=FailingProducer("UNKNOWN_TOPIC_OR_PART"), timeout=5)


def test_unconfirmed_delivery_through_the_endpoint_is_503(client, issued_key, monkeypatch, settings):
    settings.INGEST_DELIVERY_TIMEOUT = -1  # no waiting: the silent producer never answers anyway
    producer = SilentProducer()
    monkeypatch.setattr(kafka, "web_producer", lambda: producer)
    response = post(client, REFERENCE, issued_key[1])
    assert response.status_code == 503
    assert producer.produced == 1


# -- rate limit -----------------------------------------------------------------------------------

def test_requests_past_the_burst_get_429_with_retry_after(client, delivery):
    _, plain = keys.api_key_create(name="slow", source="web_app", rate_per_minute=1, burst=2)
    assert post(client, REFERENCE, plain).status_code == 202
    assert post(client, {**REFERENCE, "id": "2"}, plain).status_code == 202
    refused = post(client, {**REFERENCE, "id": "3"}, plain)
    assert refused.status_code == 429
    assert "1 demands per minute" in refused.json()["error"]
    assert int(refused["Retry-After"]) >= 1
    assert len(delivery.records) == 2


def test_each_demand_in_an_array_takes_a_token(client, delivery):
    _, plain = keys.api_key_create(name="arrays", source="web_app", rate_per_minute=1, burst=3)
    assert post(client, [{**REFERENCE, "id": str(i)} for i in range(2)], plain).status_code == 202
    assert post(client, [{**REFERENCE, "id": str(i)} for i in range(2, 4)], plain).status_code == 429


def test_a_request_bigger_than_the_burst_is_refused_with_the_reason(client, delivery):
    _, plain = keys.api_key_create(name="tiny", source="web_app", burst=1)
    response = post(client, [REFERENCE, {**REFERENCE, "id": "2"}], plain)
    assert response.status_code == 429
    assert "at most 1 at once" in response.json()["error"]


def test_token_bucket_refills_at_the_key_rate_up_to_the_burst(issued_key):
    api_key = keys.api_key_create(name="bucket", source="web_app", rate_per_minute=60, burst=2)[0]
    take = lambda now, cost=1: keys.rate_limit_take(api_key=api_key, cost=cost, now=now)  # noqa: E731
    assert take(1000.0) is None and take(1000.0) is None  # a full bucket: the burst
    assert take(1000.0) == pytest.approx(1.0)  # empty: one token a second at 60/min
    assert take(1000.5) == pytest.approx(0.5)
    assert take(1001.0) is None  # refilled one
    assert take(5000.0, cost=2) is None  # a long pause refills only up to the burst…
    assert take(5000.0) is not None  # …not beyond it


def test_a_clock_that_goes_back_never_adds_tokens(issued_key):
    api_key = keys.api_key_create(name="skew", source="web_app", rate_per_minute=60, burst=1)[0]
    assert keys.rate_limit_take(api_key=api_key, cost=1, now=1000.0) is None
    assert keys.rate_limit_take(api_key=api_key, cost=1, now=900.0) is not None


def test_revoked_key_takes_no_tokens_and_other_keys_have_their_own_bucket(client, delivery):
    _, first = keys.api_key_create(name="one", source="web_app", rate_per_minute=1, burst=1)
    _, second = keys.api_key_create(name="two", source="web_app", rate_per_minute=1, burst=1)
    assert post(client, REFERENCE, first).status_code == 202
    assert post(client, REFERENCE, first).status_code == 429
    assert post(client, REFERENCE, second).status_code == 202


# -- CORS -----------------------------------------------------------------------------------------

SHOP = "https://shop.example.com"


def preflight(client, origin):
    return client.options(URL, HTTP_ORIGIN=origin, HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
                          HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type")


def test_preflight_is_answered_for_an_origin_a_key_allows(client):
    keys.api_key_create(name="shop", source="web_app", allowed_origins=SHOP + "/")
    response = preflight(client, SHOP)
    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == SHOP
    assert "POST" in response["Access-Control-Allow-Methods"]
    assert "Authorization" in response["Access-Control-Allow-Headers"]
    assert "Origin" in response["Vary"]


def test_preflight_from_an_unknown_origin_gets_no_cors_headers(client):
    keys.api_key_create(name="shop", source="web_app", allowed_origins=SHOP)
    response = preflight(client, "https://evil.example")
    assert response.status_code == 403
    assert "Access-Control-Allow-Origin" not in response


def test_preflight_ignores_origins_of_revoked_keys(client):
    api_key, _ = keys.api_key_create(name="shop", source="web_app", allowed_origins=SHOP)
    keys.api_key_revoke(api_key=api_key)
    assert preflight(client, SHOP).status_code == 403


def test_origins_in_the_environment_setting_are_allowed_for_every_key(client, settings, issued_key, delivery):
    settings.INGEST_CORS_ALLOWED_ORIGINS = [SHOP]
    assert preflight(client, SHOP).status_code == 204
    response = post(client, REFERENCE, issued_key[1], HTTP_ORIGIN=SHOP)
    assert response.status_code == 202
    assert response["Access-Control-Allow-Origin"] == SHOP


def test_post_from_an_origin_its_key_does_not_allow_is_refused_and_not_produced(client, delivery):
    keys.api_key_create(name="shop", source="web_app", allowed_origins=SHOP)
    _, other = keys.api_key_create(name="backend", source="web_app")
    response = post(client, REFERENCE, other, HTTP_ORIGIN=SHOP)
    assert response.status_code == 403
    assert "not allowed for this API key" in response.json()["error"]
    assert delivery.records == []


def test_post_from_an_allowed_origin_can_read_the_answer_including_errors(client, delivery):
    _, plain = keys.api_key_create(name="shop", source="web_app", allowed_origins=SHOP)
    response = post(client, {**REFERENCE, "content": ""}, plain, HTTP_ORIGIN=SHOP)
    assert response.status_code == 422
    assert response["Access-Control-Allow-Origin"] == SHOP
    assert "Retry-After" in response["Access-Control-Expose-Headers"]
    wrong = post(client, REFERENCE, "umk_00000000_nope", HTTP_ORIGIN=SHOP)
    assert wrong.status_code == 401 and wrong["Access-Control-Allow-Origin"] == SHOP


def test_server_to_server_calls_send_no_origin_and_need_no_allowed_origins(client, issued_key, delivery):
    response = post(client, REFERENCE, issued_key[1])
    assert response.status_code == 202
    assert "Access-Control-Allow-Origin" not in response
