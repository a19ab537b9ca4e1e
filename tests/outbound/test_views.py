"""The settings page (own subscriptions; team channels for those allowed) and the delivery log's masking."""

import pytest
from django.contrib.auth.models import Permission

from demands.models import OutboundChannel, OutboundMessage, SavedView, Subscription
from demands.outbound.subscriptions import mask_target

from .conftest import make_demand

pytestmark = pytest.mark.django_db
DINGTALK = "https://oapi.dingtalk.com/robot/send?access_token=ab3f9e1c7d2289"


def test_a_user_saves_their_own_subscriptions_and_saved_view_notifications(client, alice, team):
    ops = OutboundChannel.objects.create(name="ops chat", kind="wecom", target="https://qyapi.weixin.qq.com/x?key=k", team=team)
    view = SavedView.objects.create(user=alice, name="urgent", query="priority=urgent")
    client.force_login(alice)
    page = client.get("/notifications/settings/").content.decode()
    assert "ops chat" in page and "Team channels" not in page  # no permission to manage channels
    client.post("/notifications/settings/", {"section": "mine", "route": ["assigned:", f"comment:{ops.pk}", "bogus:"],
                                             "saved_view": [str(view.pk)]})
    assert set(Subscription.objects.filter(user=alice).values_list("kind", "channel_id")) == {("assigned", None), ("comment", ops.pk)}
    view.refresh_from_db()
    assert view.notify


def test_a_user_cannot_route_to_another_teams_channel(client, alice):
    other = OutboundChannel.objects.create(name="elsewhere", kind="slack", target="https://hooks.slack.com/services/x")
    client.force_login(alice)
    client.post("/notifications/settings/", {"section": "mine", "route": [f"assigned:{other.pk}"]})
    assert not Subscription.objects.exists()


def test_staff_with_the_permission_add_team_channels_and_choose_their_kinds(client, alice, team):
    alice.user_permissions.add(Permission.objects.get(codename="change_outboundchannel"))
    client.force_login(alice)
    client.post("/notifications/settings/", {"section": "new-channel", "name": "ops", "kind": "dingtalk", "team": team.pk,
                                             "target": DINGTALK, "secret": "SEC1"})
    channel = OutboundChannel.objects.get()
    client.post("/notifications/settings/", {"section": "channel", "channel": channel.pk, "kind": ["team", "sla"]})
    assert set(Subscription.objects.filter(team=team, channel=channel).values_list("kind", flat=True)) == {"team", "sla"}
    page = client.get("/notifications/settings/").content.decode()
    assert "access_token=ab…89" in page and DINGTALK not in page  # not a superuser: masked


def test_a_channel_url_must_be_http(client, alice):
    alice.user_permissions.add(Permission.objects.get(codename="change_outboundchannel"))
    client.force_login(alice)
    client.post("/notifications/settings/", {"section": "new-channel", "name": "x", "kind": "slack", "target": "file:///etc/passwd"})
    assert not OutboundChannel.objects.exists()


def test_the_delivery_log_masks_targets_for_all_but_superusers(client, alice, django_user_model):
    demand = make_demand()
    OutboundMessage.objects.create(route=f"email:{alice.pk}", kind="assigned", user=alice, target="alice@example.com",
                                   demand=demand, status="failed", last_error="Connection failed", attempts=6)
    channel = OutboundChannel.objects.create(name="robot", kind="dingtalk", target=DINGTALK)
    OutboundMessage.objects.create(route=f"channel:{channel.pk}", kind="rule", channel=channel, target=DINGTALK, demand=demand)
    client.force_login(alice)
    page = client.get("/notifications/deliveries/").content.decode()
    assert "al…@example.com" in page and "Connection failed" in page and DINGTALK not in page
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw-root-123")
    client.force_login(admin)
    assert DINGTALK.replace("&", "&amp;") in client.get("/notifications/deliveries/").content.decode()


def test_masking_keeps_the_host_and_two_characters_at_each_end():
    assert mask_target(DINGTALK) == "https://oapi.dingtalk.com/robot/send?access_token=ab…89"
    assert mask_target("https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX") == \
        "https://hooks.slack.com/services/T000/B000/XX…XX"
    assert mask_target("ops@example.com, b@example.com") == "op…@example.com, b…@example.com"


def test_the_admin_lists_masked_targets_for_staff_and_whole_ones_for_superusers(client, alice, django_user_model):
    alice.user_permissions.add(*Permission.objects.filter(codename__in=["view_outboundchannel", "view_outboundmessage"]))
    OutboundChannel.objects.create(name="robot", kind="dingtalk", target=DINGTALK)
    client.force_login(alice)
    page = client.get("/admin/demands/outboundchannel/").content.decode()
    assert "access_token=ab…89" in page and DINGTALK not in page
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "pw-root-123"))
    assert DINGTALK.replace("&", "&amp;") in client.get("/admin/demands/outboundchannel/").content.decode()
