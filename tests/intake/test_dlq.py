"""The rejected-message work queue: see, correct and replay, discard; every action recorded."""

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from demands.intake import dlq
from demands.pipeline.persist import persist_batch
from demands.models import Demand, RejectedMessage

from ..conftest import REFERENCE, record

pytestmark = pytest.mark.django_db
Status = RejectedMessage.Status


def reject(value, *, offset=0, partition=0, key=None) -> RejectedMessage:
    persist_batch([record(value, offset=offset, partition=partition, key=key)])
    return RejectedMessage.objects.get(offset=offset, partition=partition)


def test_list_shows_open_messages_by_default_and_filters_by_status(dlq_client, staff_user):
    open_one = reject(b"{open", offset=1)
    replayed = reject(b"{replayed", offset=2)
    discarded = reject(b"{discarded", offset=3)
    RejectedMessage.objects.filter(pk=replayed.pk).update(status=Status.REPLAYED)
    RejectedMessage.objects.filter(pk=discarded.pk).update(status=Status.DISCARDED, handled_by=staff_user)

    def shown(query=""):
        html = dlq_client.get("/rejected/" + query).content.decode()
        return {pk for pk in (open_one.pk, replayed.pk, discarded.pk) if f'id="rejected-{pk}"' in html}

    assert shown() == {open_one.pk}
    assert shown("?status=replayed") == {replayed.pk}
    assert shown("?status=discarded") == {discarded.pk}
    assert shown("?status=all") == {open_one.pk, replayed.pk, discarded.pk}
    assert shown("?status=bogus") == {open_one.pk}


def test_htmx_status_switch_gets_only_the_table(dlq_client):
    reject(b"{x")
    html = dlq_client.get("/rejected/?status=open", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="rejected-table").content.decode()
    assert html.lstrip().startswith('<div id="rejected-table">')
    assert "<html" not in html


def test_detail_shows_reason_coordinates_and_the_payload_indented_and_escaped(dlq_client):
    rejected = reject({"id": "1", "note": "<script>alert(1)</script>"}, offset=12, partition=2, key=b"web_app:1")
    html = dlq_client.get(f"/rejected/{rejected.pk}/").content.decode()
    assert "missing required field(s): type, content, timestamp, source" in html
    assert "demand-topic[2]@12" in html
    assert "web_app:1" in html
    assert '{\n  &quot;id&quot;: &quot;1&quot;,' in html  # pretty-printed JSON, HTML-escaped
    assert "<script>alert(1)" not in html


def test_non_json_payload_is_shown_as_received(dlq_client):
    rejected = reject(b"plain <b>text</b>")
    html = dlq_client.get(f"/rejected/{rejected.pk}/").content.decode()
    assert "plain &lt;b&gt;text&lt;/b&gt;" in html


def test_corrected_payload_is_replayed_keyed_by_source_and_id_and_the_action_recorded(dlq_client, staff_user, delivery):
    rejected = reject({**REFERENCE, "timestamp": "yesterday"}, offset=4)
    corrected = json.dumps(REFERENCE, ensure_ascii=False)
    response = dlq_client.post(f"/rejected/{rejected.pk}/replay/", {"payload": corrected, "note": "fixed the date"})
    assert response.status_code == 302
    [(topic, key, value, headers)] = delivery.records
    assert (topic, key, value) == ("demand-topic", b"web_app:123456", corrected.encode())
    assert dict(headers)["replay.by"] == b"triager"
    rejected.refresh_from_db()
    assert rejected.status == Status.REPLAYED
    assert (rejected.handled_by, rejected.note) == (staff_user, "fixed the date")
    assert rejected.handled_at is not None
    assert (rejected.replay_topic, rejected.replay_offset) == ("demand-topic", 0)
    assert rejected.payload_text == json.dumps({**REFERENCE, "timestamp": "yesterday"}, ensure_ascii=False)  # kept as received
    html = dlq_client.get(response["Location"]).content.decode()
    assert "Replayed to demand-topic[0]@0" in html
    assert "triager" in html and "fixed the date" in html


def test_page_shows_what_became_of_a_replay(dlq_client, delivery):
    rejected = reject({**REFERENCE, "timestamp": "yesterday"}, offset=4)
    dlq.rejected_message_replay(rejected=rejected, actor=dlq_client_user(dlq_client), payload=json.dumps(REFERENCE))
    assert "Not read by the consumer yet" in dlq_client.get(f"/rejected/{rejected.pk}/").content.decode()
    persist_batch([record(REFERENCE, offset=0)])  # the consumer reads the replay
    demand = Demand.objects.get()
    assert f'href="/demands/{demand.pk}/"' in dlq_client.get(f"/rejected/{rejected.pk}/").content.decode()


def test_page_links_a_replay_that_was_rejected_again_with_its_new_reason(dlq_client, delivery):
    rejected = reject({**REFERENCE, "timestamp": "yesterday"}, offset=4)
    dlq.rejected_message_replay(rejected=rejected, actor=dlq_client_user(dlq_client), payload='{"id": "still bad"}')
    persist_batch([record(b'{"id": "still bad"}', offset=0)])  # where the replay landed
    again = RejectedMessage.objects.get(offset=0)
    html = dlq_client.get(f"/rejected/{rejected.pk}/").content.decode()
    assert f'href="/rejected/{again.pk}/"' in html
    assert "Rejected again" in html and "missing required field(s)" in html


def dlq_client_user(client):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(pk=client.session["_auth_user_id"])


def test_replay_without_a_payload_sends_the_original_bytes_with_the_original_key(staff_user, delivery):
    rejected = reject(b"\xff not utf-8", key=b"legacy-key")
    dlq.rejected_message_replay(rejected=rejected, actor=staff_user)
    [(_topic, key, value, _headers)] = delivery.records
    assert (key, value) == (b"legacy-key", b"\xff not utf-8")


def test_replay_goes_back_to_its_own_topic_when_that_is_a_demand_topic(staff_user, delivery, settings):
    settings.KAFKA_TOPICS = ["demand-topic", "app-logs"]
    persist_batch([record(b"{bad", topic="app-logs")])
    dlq.rejected_message_replay(rejected=RejectedMessage.objects.get(), actor=staff_user)
    assert delivery.records[0][0] == "app-logs"


def test_replay_that_kafka_does_not_confirm_records_nothing_and_stays_open(dlq_client, delivery):
    delivery.fail_with = "Local: Message timed out"
    rejected = reject(b"{bad")
    response = dlq_client.post(f"/rejected/{rejected.pk}/replay/", {"payload": "{edited"})
    assert response.status_code == 503
    html = response.content.decode()
    assert "Kafka did not confirm the replay" in html and "Message timed out" in html
    assert "{edited" in html  # the correction is not lost
    rejected.refresh_from_db()
    assert (rejected.status, rejected.handled_by, rejected.replay_offset) == (Status.OPEN, None, None)


def test_a_handled_message_cannot_be_replayed_or_discarded_again(dlq_client, staff_user, delivery):
    rejected = reject(b"{bad")
    dlq.rejected_message_discard(rejected=rejected, actor=staff_user, note="spam")
    assert dlq_client.post(f"/rejected/{rejected.pk}/replay/", {"payload": "{x"}).status_code == 409
    assert dlq_client.post(f"/rejected/{rejected.pk}/discard/").status_code == 409
    assert delivery.records == []
    rejected.refresh_from_db()
    assert (rejected.status, rejected.note) == (Status.DISCARDED, "spam")


def test_a_concurrent_handler_wins_and_the_late_one_is_told(staff_user, delivery):
    rejected = reject(b"{bad")
    stale = RejectedMessage.objects.get(pk=rejected.pk)
    dlq.rejected_message_discard(rejected=rejected, actor=staff_user)
    with pytest.raises(dlq.AlreadyHandled):
        dlq.rejected_message_replay(rejected=stale, actor=staff_user, payload="{x")  # stale copy still says open
    assert RejectedMessage.objects.get(pk=rejected.pk).status == Status.DISCARDED


def test_discard_records_who_when_and_why(dlq_client, staff_user):
    rejected = reject(b"{bad")
    response = dlq_client.post(f"/rejected/{rejected.pk}/discard/", {"note": "test traffic"})
    assert response.status_code == 302
    rejected.refresh_from_db()
    assert (rejected.status, rejected.handled_by, rejected.note) == (Status.DISCARDED, staff_user, "test traffic")
    assert rejected.handled_at is not None


def test_htmx_actions_swap_the_work_panel(dlq_client, delivery):
    rejected = reject(b"{bad")
    response = dlq_client.post(f"/rejected/{rejected.pk}/discard/", HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<section class="card" id="work">')
    assert "Discarded." in html


def test_staff_without_the_permission_can_look_but_not_act(client, viewer_user, delivery):
    staff_client = client
    staff_client.force_login(viewer_user)  # staff, not a triager: no change permission on rejected messages
    rejected = reject(b"{bad")
    html = staff_client.get(f"/rejected/{rejected.pk}/").content.decode()
    assert "Replay to Kafka" not in html
    assert staff_client.post(f"/rejected/{rejected.pk}/replay/", {"payload": "{x"}).status_code == 403
    assert staff_client.post(f"/rejected/{rejected.pk}/discard/").status_code == 403
    assert delivery.records == []
    assert RejectedMessage.objects.get().status == Status.OPEN


def test_anonymous_users_are_sent_to_login_for_every_dlq_page(client):
    rejected = reject(b"{bad")
    for url in (f"/rejected/{rejected.pk}/",):
        assert client.get(url)["Location"].startswith("/login/")
    for url in (f"/rejected/{rejected.pk}/replay/", f"/rejected/{rejected.pk}/discard/"):
        assert client.post(url)["Location"].startswith("/login/")


def test_the_form_says_whether_the_payload_would_pass_now(dlq_client):
    rejected = reject({**REFERENCE, "timestamp": "yesterday"})
    html = dlq_client.get(f"/rejected/{rejected.pk}/").content.decode()
    assert "would reject it again" in html and "not an ISO 8601 date-time" in html


def test_admin_bulk_replay_and_discard_use_the_same_services(admin_client, delivery):
    first, second, third = (reject(b"{bad", offset=i) for i in range(3))
    admin_client.post("/admin/demands/rejectedmessage/", {"action": "replay_selected", "_selected_action": [first.pk, second.pk]})
    admin_client.post("/admin/demands/rejectedmessage/", {"action": "discard_selected", "_selected_action": [second.pk, third.pk]})
    statuses = dict(RejectedMessage.objects.values_list("pk", "status"))
    assert statuses == {first.pk: Status.REPLAYED, second.pk: Status.REPLAYED, third.pk: Status.DISCARDED}
    assert len(delivery.records) == 2


def test_permission_is_the_standard_change_permission():
    assert Permission.objects.filter(codename="change_rejectedmessage", content_type__app_label="demands").exists()


def test_an_older_row_at_the_replay_coordinates_is_not_taken_for_the_outcome(staff_user, delivery):
    # Offsets restart when a topic is re-created: the replay can land where an old row sits.
    old = reject(b"{from the topic's previous life", offset=0)
    RejectedMessage.objects.filter(pk=old.pk).update(received_at=timezone.now() - timedelta(days=3))
    rejected = reject(b"{bad", offset=5)
    dlq.rejected_message_replay(rejected=rejected, actor=staff_user, payload='{"id": "x"}')
    assert (rejected.replay_partition, rejected.replay_offset) == (old.partition, old.offset)  # the recorder's
    assert dlq.replay_outcome(rejected=rejected).pending


def test_a_payload_with_a_lone_surrogate_escape_is_shown_as_sent_not_decoded():
    from demands.intake.dlq import payload_pretty

    text, is_json = payload_pretty('{"content": "\\ud921"}')
    assert (text, is_json) == ('{"content": "\\ud921"}', False)
    text.encode("utf-8")


def test_triagers_work_the_dead_letter_queue(staff_client, delivery):
    rejected = reject(b"{bad")
    assert staff_client.post(f"/rejected/{rejected.pk}/discard/").status_code == 302
    assert RejectedMessage.objects.get().status == Status.DISCARDED
