"""At ingest: saved views with notify on (one query per view per batch), rules that post to a channel; follows."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from demands import services
from demands.models import Follow, Notification, OutboundMessage, Rule, SavedView
from demands.outbound.dispatch import deliver_due
from demands.pipeline.persist import persist_batch
from tests.conftest import REFERENCE, record

from .conftest import channel, make_demand, subscribe

pytestmark = pytest.mark.django_db


def test_a_saved_view_with_notify_on_tells_its_owner_of_matching_new_demands(alice, bob):
    SavedView.objects.create(user=alice, name="urgent web", query="priority=urgent&source=web_app", notify=True)
    SavedView.objects.create(user=bob, name="quiet", query="priority=urgent", notify=False)
    subscribe(user=alice, kind="saved_view")
    created = persist_batch([
        record({**REFERENCE, "id": "u1", "priority": "urgent"}, offset=1),
        record({**REFERENCE, "id": "n1", "priority": "normal"}, offset=2),
        record({**REFERENCE, "id": "u2", "priority": "urgent", "source": "mobile"}, offset=3),
    ]).created
    [notification] = Notification.objects.filter(kind=Notification.Kind.SAVED_VIEW)
    assert notification.user == alice and notification.demand_id == created[0].pk and "urgent web" in notification.text
    assert OutboundMessage.objects.get().kind == "saved_view"


def test_saved_views_cost_one_query_each_per_batch(alice, bob):
    for user in (alice, bob):
        SavedView.objects.create(user=user, name="urgent", query="priority=urgent", notify=True)
    from demands.outbound.ingest import notify_saved_views

    pks = [make_demand(priority="urgent").pk for _ in range(20)]
    with CaptureQueriesContext(connection) as queries:
        notify_saved_views(pks, now=timezone.now())
    matching = [q for q in queries.captured_queries if 'FROM "demands_demand"' in q["sql"]]
    assert len(matching) == 2  # one per subscribed view, whatever the batch's size
    assert Notification.objects.filter(kind="saved_view").count() == 40


def test_a_rule_can_post_matching_demands_to_a_channel(receiver):
    hook = channel(receiver, "webhook", secret="s")
    Rule.objects.create(name="to billing service", match_keywords="refund", notify_channel=hook)
    persist_batch([record({**REFERENCE, "id": "r1", "content": "refund please"}, offset=1),
                   record({**REFERENCE, "id": "r2", "content": "hello"}, offset=2)])
    [row] = OutboundMessage.objects.all()
    assert row.kind == "rule" and row.summary == {"rule": "to billing service"}
    deliver_due(now=timezone.now())
    body = receiver.json()
    assert body["event"] == "notification.rule" and body["demand"]["message_id"] == "r1"
    assert body["title"].endswith("matched the rule “to billing service”")


def test_commenting_follows_and_followers_hear_of_comments(alice, bob):
    demand = make_demand()
    services.demand_comment(demand=demand, body="first", actor=alice)
    assert Follow.objects.filter(user=alice, demand=demand).exists()
    services.demand_comment(demand=demand, body="second", actor=bob)
    assert list(Notification.objects.filter(kind="comment").values_list("user__username", flat=True)) == ["alice"]


def test_the_follow_button_follows_and_unfollows(client, alice):
    demand = make_demand()
    client.force_login(alice)
    client.post(f"/demands/{demand.pk}/follow/", {"follow": "1"})
    assert Follow.objects.filter(user=alice, demand=demand).exists()
    assert "Following" in client.get(f"/demands/{demand.pk}/").content.decode()
    client.post(f"/demands/{demand.pk}/follow/", {"follow": "0"})
    assert not Follow.objects.filter(user=alice, demand=demand).exists()
