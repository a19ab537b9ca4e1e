"""Each platform's exact payload and signature, as a local receiver gets it (never the real services)."""

import base64
import hashlib
import hmac
import json
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core import mail
from django.utils import timezone

from demands import notifications
from demands.models import Notification, OutboundMessage, Priority
from demands.monitoring.webhooks import verify_signature
from demands.outbound.dispatch import deliver_due

from .conftest import channel, make_demand, subscribe

pytestmark = pytest.mark.django_db


def notify(user, demand, kind=Notification.Kind.ASSIGNED):
    return notifications.save([notifications.build(user_id=user.pk, demand=demand, who="Carol", what="assigned it", kind=kind)])


def test_email_goes_to_the_user_with_the_demand_link_and_action_links(alice):
    subscribe(user=alice, kind="assigned")
    demand = make_demand(priority=Priority.URGENT)
    notify(alice, demand)
    assert deliver_due(now=timezone.now()).sent == 1
    [message] = mail.outbox
    assert message.to == ["alice@example.com"]
    assert message.subject == f"[UMSG] Demand #{demand.pk} is assigned to you"
    assert f"https://umsg.example.com/demands/{demand.pk}/" in message.body
    assert "认领 Claim: https://umsg.example.com/act/" in message.body and "Resolve: https://umsg.example.com/act/" in message.body


def test_wecom_gets_a_markdown_message(receiver, alice, team):
    subscribe(team=team, kind="assigned", channel=channel(receiver, "wecom", team=team, path="/cgi-bin/webhook/send?key=k1"))
    demand = make_demand(content="支付失败 <@all> [x](http://evil)")
    notify(alice, demand)
    deliver_due(now=timezone.now())
    [request] = receiver.requests
    assert request["path"] == "/cgi-bin/webhook/send?key=k1"
    body = json.loads(request["body"])
    assert list(body) == ["msgtype", "markdown"] and body["msgtype"] == "markdown"
    content = body["markdown"]["content"]
    assert content.startswith(f"### Demand #{demand.pk} is assigned to you")
    assert f"[Open the demand](https://umsg.example.com/demands/{demand.pk}/)" in content
    assert "<@all>" not in content and "[x](" not in content  # the sender's markup is defused


def test_dingtalk_signs_timestamp_newline_secret_in_the_query(receiver, alice, team):
    secret = "SECabc123"
    subscribe(team=team, kind="assigned", channel=channel(receiver, "dingtalk", team=team, secret=secret,
                                                          path="/robot/send?access_token=tok"))
    notify(alice, make_demand())
    now = timezone.now()
    deliver_due(now=now)
    [request] = receiver.requests
    query = parse_qs(urlsplit(request["path"]).query)
    timestamp = query["timestamp"][0]
    assert query["access_token"] == ["tok"] and timestamp == str(int(now.timestamp() * 1000))
    expected = base64.b64encode(hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()).decode()
    assert query["sign"] == [expected]  # parse_qs undoes the url-encoding DingTalk asks for
    assert "%2B" in request["path"] or "+" not in expected  # '+' in base64 travels encoded
    body = json.loads(request["body"])
    assert body["msgtype"] == "markdown" and set(body["markdown"]) == {"title", "text"}


def test_feishu_signs_with_timestamp_newline_secret_as_key_and_sends_a_card(receiver, alice, team):
    secret = "feishu-secret"
    subscribe(team=team, kind="assigned", channel=channel(receiver, "feishu", team=team, secret=secret))
    demand = make_demand(priority=Priority.URGENT)
    notify(alice, demand)
    now = timezone.now()
    deliver_due(now=now)
    body = receiver.json()
    assert body["timestamp"] == str(int(now.timestamp()))
    key = f"{body['timestamp']}\n{secret}".encode()
    assert body["sign"] == base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
    assert body["msg_type"] == "interactive"
    card = body["card"]
    assert card["header"]["template"] == "red" and card["header"]["title"]["content"] == f"Demand #{demand.pk} is assigned to you"
    buttons = card["elements"][1]["actions"]
    assert buttons[0]["url"] == f"https://umsg.example.com/demands/{demand.pk}/"
    # a team channel's links name no one: whoever signs in acts as themselves
    assert [b["text"]["content"] for b in buttons[1:]] == ["认领 Claim", "Acknowledge", "Resolve"]


def test_slack_gets_blocks_in_mrkdwn(receiver, alice, team):
    subscribe(team=team, kind="assigned", channel=channel(receiver, "slack", team=team))
    demand = make_demand(content="a < b & c")
    notify(alice, demand)
    deliver_due(now=timezone.now())
    body = receiver.json()
    assert body["text"] == f"Demand #{demand.pk} is assigned to you"
    section, actions = body["blocks"]
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    assert "a ‹ b &amp; c" in section["text"]["text"]
    assert actions["type"] == "actions" and actions["elements"][0]["url"].endswith(f"/demands/{demand.pk}/")


def test_signed_webhook_can_be_verified_and_names_its_event(receiver, alice, team):
    subscribe(team=team, kind="assigned", channel=channel(receiver, "webhook", team=team, secret="shared"))
    demand = make_demand()
    notify(alice, demand)
    now = timezone.now()
    deliver_due(now=now)
    [request] = receiver.requests
    headers = request["headers"]
    assert headers["X-Umsg-Event"] == "notification.assigned"
    assert verify_signature("shared", headers["X-Umsg-Signature"], request["body"], now=now.timestamp())
    assert not verify_signature("shared", headers["X-Umsg-Signature"], request["body"], now=now.timestamp() + 3600)  # replayed later
    assert not verify_signature("other", headers["X-Umsg-Signature"], request["body"], now=now.timestamp())
    body = json.loads(request["body"])
    assert body["demand"]["id"] == demand.pk and body["event"] == "notification.assigned"
    assert headers["X-Umsg-Delivery"] == str(OutboundMessage.objects.get(channel__isnull=False).pk)


def test_a_robot_answering_200_with_an_error_code_is_a_failed_attempt(receiver, alice, team):
    subscribe(team=team, kind="assigned", channel=channel(receiver, "dingtalk", team=team))
    receiver.answers.put((200, b'{"errcode":310000,"errmsg":"sign not match"}'))
    notify(alice, make_demand())
    run = deliver_due(now=timezone.now())
    assert run.failed == 1
    row = OutboundMessage.objects.get()
    assert row.status == "pending" and row.attempts == 1 and "310000" in row.last_error
