"""Which routes a notification reaches, in whose language; the outbox across crashes and failures; SSRF."""

import socket
from datetime import timedelta

import pytest
from django.core import mail
from django.db import transaction
from django.utils import timezone

from demands import notifications, services
from demands.models import Notification, OutboundMessage, Team
from demands.outbound.dispatch import deliver_due

from .conftest import channel, make_demand, subscribe

pytestmark = pytest.mark.django_db


def notify(user, demand, kind=Notification.Kind.ASSIGNED):
    return notifications.save([notifications.build(user_id=user.pk, demand=demand, who="Carol", what="x", kind=kind)])


def test_only_subscribed_kinds_reach_a_users_email(alice):
    subscribe(user=alice, kind="comment")
    demand = make_demand()
    notify(alice, demand, Notification.Kind.ASSIGNED)
    assert not OutboundMessage.objects.exists()
    notify(alice, demand, Notification.Kind.COMMENT)
    [row] = OutboundMessage.objects.all()
    assert (row.route, row.kind, row.target) == (f"email:{alice.pk}", "comment", "alice@example.com")


def test_a_team_channel_hears_of_a_team_assignment_once_not_once_per_member(receiver, alice, bob, team, staff_user):
    subscribe(team=team, kind="team", channel=channel(receiver, "slack", team=team))
    demand = make_demand()
    services.demand_assign(demand=demand, team=team, actor=staff_user)
    assert Notification.objects.filter(kind="team").count() == 2  # alice and bob, in the page
    [row] = OutboundMessage.objects.all()
    assert row.route.startswith("channel:") and row.user_id is None


def test_a_team_channel_subscribed_to_team_assignments_ignores_other_teams_demands(receiver, alice, team, staff_user):
    other = Team.objects.create(name="Billing")
    other.members.add(alice)
    subscribe(team=team, kind="team", channel=channel(receiver, "slack", team=team))
    services.demand_assign(demand=make_demand(), team=other, actor=staff_user)
    assert not OutboundMessage.objects.exists()


def test_a_disabled_channel_gets_nothing(receiver, alice, team):
    subscribe(team=team, kind="assigned", channel=channel(receiver, "slack", team=team, enabled=False))
    notify(alice, make_demand())
    assert not OutboundMessage.objects.exists()


def test_a_message_is_written_in_the_recipients_language(alice, bob):
    subscribe(user=alice, kind="assigned")
    subscribe(user=bob, kind="assigned")
    demand = make_demand()
    notify(alice, demand)
    notify(bob, demand)
    deliver_due(now=timezone.now())
    subjects = {message.to[0]: message.subject for message in mail.outbox}
    assert subjects["alice@example.com"] == f"[UMSG] Demand #{demand.pk} is assigned to you"
    assert subjects["bob@example.com"] == f"[UMSG] 需求 #{demand.pk} 已分配给你"


def test_outbox_rows_commit_with_their_notification_or_not_at_all(alice):
    subscribe(user=alice, kind="assigned")
    demand = make_demand()
    with pytest.raises(RuntimeError), transaction.atomic():
        notify(alice, demand)
        raise RuntimeError("the batch failed")
    assert not Notification.objects.exists() and not OutboundMessage.objects.exists()


def test_a_row_left_sending_by_a_crashed_worker_is_sent_later(alice):
    subscribe(user=alice, kind="assigned")
    notify(alice, make_demand())
    now = timezone.now()
    OutboundMessage.objects.update(status="sending", next_attempt_at=now, released_at=now)  # the worker died mid-send
    assert deliver_due(now=now + timedelta(minutes=1)).sent == 0 and not mail.outbox
    assert deliver_due(now=now + timedelta(minutes=11)).sent == 1
    assert OutboundMessage.objects.get().status == "sent" and len(mail.outbox) == 1


def test_a_failed_send_is_retried_with_back_off_and_the_error_kept(receiver, alice, team, settings):
    settings.MONITORING_RETRY_BASE_SECONDS = 15
    subscribe(team=team, kind="assigned", channel=channel(receiver, "wecom", team=team))
    receiver.answers.put((500, b"boom"))
    notify(alice, make_demand())
    now = timezone.now()
    assert deliver_due(now=now).failed == 1
    row = OutboundMessage.objects.get()
    assert row.status == "pending" and row.last_error.startswith("HTTP 500") and row.response_status == 500
    assert row.next_attempt_at == now + timedelta(seconds=15)
    assert deliver_due(now=now + timedelta(seconds=14)).sent == 0
    assert deliver_due(now=now + timedelta(seconds=15)).sent == 1
    assert OutboundMessage.objects.get().status == "sent" and len(receiver.requests) == 2


def test_private_targets_are_refused_like_alert_webhooks(alice, team, monkeypatch, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = []
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("connected to a refused address"))
    target = channel(type("R", (), {"url": lambda self, path: "http://127.0.0.1:8541/hook"})(), "dingtalk", team=team)
    subscribe(team=team, kind="assigned", channel=target)
    notify(alice, make_demand())
    assert deliver_due(now=timezone.now()).failed == 1
    assert OutboundMessage.objects.get().last_error == "Target address not allowed (WEBHOOK_ALLOWED_HOSTS)"


def test_an_assignee_follows_and_hears_of_later_comments(alice, staff_user):
    demand = make_demand()
    services.demand_assign(demand=demand, assignee=alice, actor=staff_user)
    services.demand_assign(demand=demand, assignee=None, actor=staff_user)
    services.demand_comment(demand=demand, body="still there?", actor=staff_user)
    assert Notification.objects.filter(user=alice, kind="comment").count() == 1


def test_a_group_assignment_is_one_message_per_person_titled_with_the_group(alice, bob, team, staff_user):
    from demands.groups import services as group_services
    from demands.models import DemandGroup

    subscribe(user=alice, kind="assigned")
    subscribe(user=bob, kind="team")
    group = DemandGroup.objects.create(fingerprint="fp", type="user_feedback", source="web_app", title="页面加载太慢",
                                       count=3, first_seen=timezone.now(), last_seen=timezone.now())
    for _ in range(3):
        make_demand(group=group)
    group_services.group_triage(group=group, actor=staff_user, assignee=alice, team=team)
    rows = list(OutboundMessage.objects.order_by("id"))
    assert [(row.kind, row.summary) for row in rows] == [("assigned", {"group": group.pk, "count": 3}),
                                                         ("team", {"group": group.pk, "count": 3})]
    deliver_due(now=timezone.now())
    subjects = {message.to[0]: message.subject for message in mail.outbox}
    assert subjects == {"alice@example.com": f"[UMSG] Group #{group.pk} (3 open demands) is assigned to you",
                        "bob@example.com": f"[UMSG] 分组 #{group.pk}（3 个未关闭的需求）已分配给你的团队 Ops"}
