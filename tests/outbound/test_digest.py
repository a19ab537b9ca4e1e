"""Flood control: a backlog drained after an outage becomes a few messages and one digest per route and window."""

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from demands.models import Notification, OutboundMessage, Rule
from demands.outbound.dispatch import deliver_due
from demands.pipeline.persist import persist_batch
from tests.conftest import REFERENCE, record

from .conftest import channel, subscribe

pytestmark = pytest.mark.django_db


def drain_backlog(n: int, *, start: int = 0, urgent_every: int = 0):
    records = []
    for i in range(start, start + n):
        priority = "urgent" if urgent_every and i % urgent_every == 0 else "normal"
        records.append(record({**REFERENCE, "id": f"b{i}", "priority": priority, "content": f"backlog {i}"}, offset=i))
    return persist_batch(records)


def test_two_thousand_assignments_in_one_drain_send_one_message_then_a_digest_per_channel(receiver, alice, team, settings):
    settings.OUTBOUND_FLOOD_LIMIT = 2
    Rule.objects.create(name="route all", assign_to=alice)
    subscribe(user=alice, kind="assigned")
    subscribe(team=team, kind="assigned", channel=channel(receiver, "feishu", team=team))
    result = drain_backlog(2000, urgent_every=50)
    assert len(result.created) == 2000
    assert Notification.objects.filter(user=alice, kind="assigned").count() == 2000  # the page still lists each
    assert OutboundMessage.objects.filter(status="queued").count() == 4000  # one per route, kept until sent
    now = timezone.now()
    deliver_due(now=now)
    assert len(mail.outbox) == 2 and len(receiver.requests) == 2  # not 2,000 posts each
    digest_mail = mail.outbox[-1]
    assert digest_mail.subject == "[UMSG] 1,999 notifications arrived while the consumer was catching up; 39 urgent"  # b0, urgent, went alone
    digest_card = receiver.json(-1)["card"]
    assert digest_card["header"]["title"]["content"].startswith("1,999 notifications arrived") and digest_card["header"]["template"] == "red"
    assert OutboundMessage.objects.filter(status="digested").count() == 2 * 1999
    assert OutboundMessage.objects.filter(kind="digest", status="sent").count() == 2


def test_more_arriving_in_a_full_window_waits_then_leaves_as_one_digest(alice, settings):
    settings.OUTBOUND_FLOOD_LIMIT = 2
    Rule.objects.create(name="route all", assign_to=alice)
    subscribe(user=alice, kind="assigned")
    drain_backlog(10)
    now = timezone.now()
    deliver_due(now=now)
    assert len(mail.outbox) == 2
    drain_backlog(30, start=100)
    deliver_due(now=now + timedelta(seconds=60))
    assert len(mail.outbox) == 2  # the window is used up: the rows wait, none is lost
    assert OutboundMessage.objects.filter(status="queued").count() == 30
    deliver_due(now=now + timedelta(seconds=301))
    assert len(mail.outbox) == 4
    assert "29 notifications arrived" in mail.outbox[-1].subject


def test_a_few_notifications_go_out_one_by_one(alice):
    Rule.objects.create(name="route all", assign_to=alice)
    subscribe(user=alice, kind="assigned")
    drain_backlog(3)
    deliver_due(now=timezone.now())
    assert len(mail.outbox) == 3 and all("is assigned to you" in m.subject for m in mail.outbox)
