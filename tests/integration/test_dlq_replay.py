"""Against the real broker: a rejected message corrected and replayed from the Rejected page."""

import json
import uuid

import pytest
from django.contrib.auth.models import Permission

from demands.models import Demand, RejectedMessage

from ..conftest import REFERENCE
from .conftest import RunningLoop, produce, read_all, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def dlq_client(client, django_user_model):
    user = django_user_model.objects.create_user(username="fixer", password="pw-fixer-123", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="change_rejectedmessage"))
    client.force_login(user)
    return client


def landed(rejected: RejectedMessage):
    """The rejected message the consumer made from this one's replay, if it has read it."""
    return RejectedMessage.objects.filter(
        topic=rejected.replay_topic, partition=rejected.replay_partition, offset=rejected.replay_offset
    ).first()


def test_replay_still_invalid_is_rejected_again_with_the_new_reason_and_a_corrected_one_is_stored(topic, settings, dlq_client):
    settings.KAFKA_TOPICS = [topic]
    broken = {**REFERENCE, "id": "42", "timestamp": "yesterday"}
    produce(topic, [json.dumps(broken).encode()], keys=[b"web_app:42"])
    with RunningLoop(topic, f"it-group-{uuid.uuid4().hex[:8]}") as running:
        wait_for(lambda: RejectedMessage.objects.exists(), running=running)
        first = RejectedMessage.objects.get()
        assert "not an ISO 8601 date-time" in first.reason

        # A correction that is still wrong: the consumer must say so, with the new reason.
        still_wrong = json.dumps({**broken, "timestamp": "2025-04-05T10:30:00"})
        assert dlq_client.post(f"/rejected/{first.pk}/replay/", {"payload": still_wrong}).status_code == 302
        first.refresh_from_db()
        assert first.status == RejectedMessage.Status.REPLAYED and first.replay_topic == topic
        wait_for(lambda: landed(first) is not None, running=running)
        second = landed(first)
        assert "has no time zone" in second.reason
        assert second.status == RejectedMessage.Status.OPEN
        assert second.key == "web_app:42"  # the producer's key rule: source:id

        fixed = json.dumps({**broken, "timestamp": "2025-04-05T10:30:00+08:00"})
        assert dlq_client.post(f"/rejected/{second.pk}/replay/", {"payload": fixed}).status_code == 302
        wait_for(lambda: Demand.objects.filter(source="web_app", message_id="42").exists(), running=running)

    second.refresh_from_db()
    demand = Demand.objects.get()
    assert (demand.kafka_topic, demand.kafka_partition, demand.kafka_offset) == (
        topic, second.replay_partition, second.replay_offset
    )
    assert RejectedMessage.objects.count() == 2
    reasons = [dict(record.headers())["dlq.reason"].decode() for record in read_all(f"{topic}.dlq", expected=2)]
    assert "not an ISO 8601" in reasons[0] and "has no time zone" in reasons[1]
    # The chain is visible on the pages: first → rejected again → stored.
    assert f'href="/rejected/{second.pk}/"' in dlq_client.get(f"/rejected/{first.pk}/").content.decode()
    assert f'href="/demands/{demand.pk}/"' in dlq_client.get(f"/rejected/{second.pk}/").content.decode()
