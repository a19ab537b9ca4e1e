"""Admin actions that change rows need the model's change permission, not only view permission:
a staff member allowed to look at API keys, rejected messages, alerts or deliveries must not
revoke, replay, discard, acknowledge or retry them from the changelist."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from demands.intake import dlq, keys
from demands.intake.models import RejectedMessage, SourceApiKey
from demands.monitoring.models import Alert, AlertDelivery, AlertRule
from demands.pipeline.persist import persist_batch

from .conftest import record

pytestmark = pytest.mark.django_db


class FakeDelivery:
    topic, partition, offset = "demand-topic", 0, 42


def api_key():
    return keys.api_key_create(name="widget", source="web_app")[0]


def rejected():
    persist_batch([record(b"{not json", offset=3)])
    return RejectedMessage.objects.get()


def alert():
    now = timezone.now()
    rule = AlertRule.objects.create(name="lag", kind=AlertRule.Kind.choices[0][0])
    return Alert.objects.create(rule=rule, rule_name="lag", kind=rule.kind, key="k", severity=rule.severity,
                                title="Lag is high", opened_at=now, last_seen_at=now)


def delivery():
    return AlertDelivery.objects.create(alert=alert(), channel="webhook", event="firing", target="https://h.example/",
                                        status=AlertDelivery.Status.FAILED, attempts=6)


ACTIONS = {
    "revoke": ("sourceapikey", "revoke_selected", api_key,
               lambda obj: SourceApiKey.objects.get(pk=obj.pk).revoked_at is not None),
    "replay": ("rejectedmessage", "replay_selected", rejected,
               lambda obj: RejectedMessage.objects.get(pk=obj.pk).status != RejectedMessage.Status.OPEN),
    "discard": ("rejectedmessage", "discard_selected", rejected,
                lambda obj: RejectedMessage.objects.get(pk=obj.pk).status != RejectedMessage.Status.OPEN),
    "acknowledge": ("alert", "acknowledge", alert, lambda obj: Alert.objects.get(pk=obj.pk).acknowledged_at is not None),
    "retry": ("alertdelivery", "retry_now", delivery,
              lambda obj: AlertDelivery.objects.get(pk=obj.pk).status == AlertDelivery.Status.PENDING),
}


def staff_with(django_user_model, *codenames):
    user = django_user_model.objects.create_user(username="ops", password=None, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="demands", codename__in=codenames))
    return user


@pytest.mark.parametrize("name", ACTIONS)
@pytest.mark.parametrize("may_change", [False, True], ids=["view permission only", "change permission"])
def test_admin_actions_need_the_change_permission(client, django_user_model, monkeypatch, name, may_change):
    monkeypatch.setattr(dlq, "deliver", lambda records: [FakeDelivery()])  # replay without a broker
    model, action, make, happened = ACTIONS[name]
    obj = make()
    perms = [f"view_{model}"] + ([f"change_{model}"] if may_change else [])
    client.force_login(staff_with(django_user_model, *perms))
    changelist = reverse(f"admin:demands_{model}_changelist")
    assert client.get(changelist).status_code == 200
    client.post(changelist, {"action": action, "_selected_action": [obj.pk]})
    assert happened(obj) is may_change
