"""A DLQ replay keeps its source and leaves a trace on the demand (issue "Hostile and careless
input", item 7): a replay could mint demands under any source and id, looking as if the source
had sent them, and a pre-claimed (source, id) then swallowed the real message."""

import json

import pytest
from django.contrib.auth.models import Permission

from demands.intake import dlq
from demands.models import Demand, RejectedMessage
from demands.pipeline.parse import IncomingMessage, record_from
from demands.pipeline.persist import persist_batch

from ..conftest import REFERENCE, record

pytestmark = pytest.mark.django_db
Status = RejectedMessage.Status


def reject(value, *, offset=0) -> RejectedMessage:
    persist_batch([record(value, offset=offset)])
    return RejectedMessage.objects.get(offset=offset)


def consume(delivered) -> Demand:
    """What the consumer does with a produced record: headers included, as Kafka hands them over."""
    topic, key, value, headers = delivered
    persist_batch([IncomingMessage(topic=topic, partition=0, offset=90, value=value, key=key, headers=tuple(headers))])
    message = json.loads(value)
    return Demand.objects.get(source=message["source"], message_id=message["id"])


# -- the source stays ---------------------------------------------------------------------------

def test_a_corrected_replay_with_the_original_source_is_produced(dlq_client, delivery):
    rejected = reject({**REFERENCE, "timestamp": "yesterday"})
    response = dlq_client.post(f"/rejected/{rejected.pk}/replay/", {"payload": json.dumps(REFERENCE)})
    assert response.status_code == 302
    assert json.loads(delivery.records[0][2])["source"] == "web_app"


def test_a_triager_cannot_replay_under_another_source(dlq_client, delivery):
    rejected = reject({**REFERENCE, "timestamp": "yesterday"})
    payload = json.dumps({**REFERENCE, "source": "billing", "id": "claimed"})
    response = dlq_client.post(f"/rejected/{rejected.pk}/replay/", {"payload": payload})
    assert response.status_code == 403
    assert "web_app" in response.content.decode() and "billing" in response.content.decode()
    assert delivery.records == []
    rejected.refresh_from_db()
    assert (rejected.status, rejected.handled_by) == (Status.OPEN, None)


def test_the_service_refuses_another_source_without_the_permission(staff_user, delivery):
    rejected = reject({**REFERENCE, "timestamp": "yesterday"})
    with pytest.raises(dlq.SourceChanged):
        dlq.rejected_message_replay(rejected=rejected, actor=staff_user, payload=json.dumps({**REFERENCE, "source": "billing"}))
    assert delivery.records == []


def test_superusers_and_holders_of_replay_any_source_may_change_it(admin_user, staff_user, delivery):
    first = reject({**REFERENCE, "timestamp": "yesterday"}, offset=1)
    second = reject({**REFERENCE, "id": "2", "timestamp": "yesterday"}, offset=2)
    dlq.rejected_message_replay(rejected=first, actor=admin_user, payload=json.dumps({**REFERENCE, "source": "billing"}))
    staff_user.user_permissions.add(Permission.objects.get(codename="replay_any_source"))
    staff_user = type(staff_user).objects.get(pk=staff_user.pk)  # permissions are cached on the instance
    dlq.rejected_message_replay(rejected=second, actor=staff_user, payload=json.dumps({**REFERENCE, "source": "billing"}))
    assert [json.loads(value)["source"] for _t, _k, value, _h in delivery.records] == ["billing", "billing"]


def test_a_message_whose_source_was_unreadable_can_be_given_one(staff_user, delivery):
    rejected = reject(b"{not json")
    dlq.rejected_message_replay(rejected=rejected, actor=staff_user, payload=json.dumps(REFERENCE))
    assert len(delivery.records) == 1


# -- the trace on the demand --------------------------------------------------------------------

class KafkaMessage:
    def __init__(self, headers):
        self._headers = headers

    def timestamp(self):
        return (0, None)

    def topic(self):
        return "demand-topic"

    def partition(self):
        return 0

    def offset(self):
        return 5

    def value(self):
        return b"{}"

    def key(self):
        return None

    def headers(self):
        return self._headers


def test_kafka_headers_are_carried_into_the_incoming_message_only_when_present():
    assert record_from(KafkaMessage([("replay.of", b"7")])).headers == (("replay.of", b"7"),)
    assert record_from(KafkaMessage(None)).headers is None


def test_a_replayed_demand_records_who_replayed_it_and_from_which_rejected_message(dlq_client, delivery):
    rejected = reject({**REFERENCE, "timestamp": "yesterday"})
    dlq_client.post(f"/rejected/{rejected.pk}/replay/", {"payload": json.dumps(REFERENCE)})
    demand = consume(delivery.records[0])
    assert demand.origin == {"via": "dlq-replay", "rejected_message": rejected.pk, "by": "triager"}


def test_a_demand_that_was_not_replayed_has_no_origin():
    persist_batch([record(REFERENCE, offset=1)])
    assert Demand.objects.get().origin is None


def test_the_demand_page_shows_the_replay_in_its_history_with_a_link(dlq_client, delivery):
    rejected = reject({**REFERENCE, "timestamp": "yesterday"})
    dlq_client.post(f"/rejected/{rejected.pk}/replay/", {"payload": json.dumps(REFERENCE)})
    demand = consume(delivery.records[0])
    html = dlq_client.get(f"/demands/{demand.pk}/").content.decode()
    history = html[html.index('id="history"'):]
    assert f'href="/rejected/{rejected.pk}/"' in history
    assert "Replayed by triager from rejected message" in history


def test_a_demand_that_came_through_rabbitmq_says_so_on_its_page(staff_client):
    headers = (("amqp.queue", b"demands"), ("amqp.message_id", b"m-42"), ("amqp.delivery_tag", b"7"))
    incoming = record(REFERENCE, offset=1)
    incoming.headers = headers
    persist_batch([incoming])
    demand = Demand.objects.get()
    assert demand.origin == {"via": "amqp", "queue": "demands", "message_id": "m-42"}
    page = staff_client.get(f"/demands/{demand.pk}/").content.decode()
    assert "RabbitMQ queue “demands”, then Kafka" in page and "m-42" in page
