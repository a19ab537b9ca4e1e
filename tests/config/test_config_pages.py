"""Configuration in the product: rules (CRUD, disable, reorder, preview numbers, test on a
demand), teams and members, API keys (shown once, revoke), permissions; the admin index without
the monitor's internal tables."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from demands.intake.keys import api_key_authenticate
from demands.models import Demand, Rule, SourceApiKey, Team
from demands.pipeline import parse, rules
from demands.pipeline.persist import persist_batch
from demands.pipeline.rules import RuleBook

from ..conftest import REFERENCE, record

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_rulebook(monkeypatch, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    monkeypatch.setattr(rules, "RELOAD_EVERY", 0)
    monkeypatch.setattr(parse, "_default_rulebook", RuleBook())


def grant(user, *codenames):
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="demands", codename__in=codenames))
    return type(user).objects.get(pk=user.pk)  # a fresh instance: permissions are cached per instance


@pytest.fixture
def admin_client(client, django_user_model):
    user = django_user_model.objects.create_superuser(username="boss", password="pw-boss-123")
    client.force_login(user)
    client.user = user
    return client


def store(contents):
    batch = [record({**REFERENCE, "id": f"c{i}", "content": text}, offset=i) for i, text in enumerate(contents)]
    return persist_batch(batch).created


RULE = {"name": "Payments outages", "order": "", "enabled": "on", "match_keywords": "payment", "set_priority": "urgent"}


def test_rules_can_be_created_edited_disabled_and_reordered(admin_client):
    response = admin_client.post(reverse("demands:config:rule-new"), RULE)
    assert response.status_code == 302
    first = Rule.objects.get(name="Payments outages")
    admin_client.post(reverse("demands:config:rule-new"), {**RULE, "name": "Second", "set_priority": "low"})
    second = Rule.objects.get(name="Second")
    assert second.order > first.order  # a new rule runs last
    admin_client.post(reverse("demands:config:rule", args=[first.pk]), {**RULE, "match_keywords": "payment, 支付"})
    first.refresh_from_db()
    assert first.match_keywords == "payment, 支付"
    admin_client.post(reverse("demands:config:rule-move", args=[second.pk]), {"direction": "up"})
    assert list(Rule.objects.order_by("order").values_list("name", flat=True)) == ["Second", "Payments outages"]
    admin_client.post(reverse("demands:config:rule-toggle", args=[second.pk]), {"enabled": "0"})
    second.refresh_from_db()
    assert not second.enabled
    page = admin_client.get(reverse("demands:config:rules")).content.decode()
    assert "Payments outages" in page and "Disabled" in page


def test_rule_form_refuses_patterns_re2_cannot_run_and_rules_without_actions(admin_client):
    response = admin_client.post(reverse("demands:config:rule-new"), {**RULE, "match_regex": r"(a)\1"})
    assert response.status_code == 400 and "RE2" in response.content.decode()
    response = admin_client.post(reverse("demands:config:rule-new"), {**RULE, "set_priority": ""})
    assert response.status_code == 400 and not Rule.objects.exists()
    response = admin_client.post(reverse("demands:config:rule-new"), {**RULE, "set_priority": "", "archive_on_arrival": "on"})
    assert response.status_code == 302  # archiving is an action too


def test_preview_counts_what_the_rule_would_change_and_whom_it_would_notify(admin_client, django_user_model):
    payments = Team.objects.create(name="Payments")
    for name in ("ann", "bob"):
        payments.members.add(django_user_model.objects.create_user(username=name, password="x", is_staff=True))
    payments.members.add(django_user_model.objects.create_user(username="gone", password="x", is_staff=True, is_active=False))
    store(["payment failed"] * 3 + ["page slow"] * 5 + ["PAYMENT timeout"])
    Demand.objects.filter(content="PAYMENT timeout").update(priority="urgent")  # matched, not changed
    response = admin_client.post(reverse("demands:config:rule-new"), {
        **RULE, "assign_team": payments.pk, "sample": "100", "_preview": "1"})
    page = response.content.decode()
    assert "Would match 4 of the last 9 demands." in page
    assert "Would set 3 of the last 9 to Urgent" in page
    assert "Would route 4 to Payments and notify 2 members of Payments" in page
    assert not Rule.objects.exists()  # a preview saves nothing


def test_preview_is_bounded_by_the_sample(admin_client):
    store(["payment failed"] * 5)
    page = admin_client.post(reverse("demands:config:rule-new"), {**RULE, "sample": "2", "_preview": "1"}).content.decode()
    assert "Would match 2 of the last 2 demands." in page


def test_test_on_this_demand_shows_what_the_rule_would_change(admin_client):
    [payment, other] = store(["payment failed", "page slow"])
    url = reverse("demands:config:rule-new")
    page = admin_client.post(url, {**RULE, "add_tags": "billing", "demand": payment.pk, "_test": "1"}).content.decode()
    assert "The rule matches and would change:" in page and 'data-field="priority"' in page and "billing" in page
    page = admin_client.post(url, {**RULE, "demand": other.pk, "_test": "1"}).content.decode()
    assert "The rule does not match this demand." in page
    page = admin_client.post(url, {**RULE, "demand": "999999", "_test": "1"}).content.decode()
    assert "No demand with that number." in page
    assert Demand.objects.get(pk=payment.pk).priority == "normal"  # nothing written


def test_teams_and_members_are_managed_on_their_page(admin_client, staff_user):
    response = admin_client.post(reverse("demands:config:teams"), {"name": "Payments"})
    team = Team.objects.get(name="Payments")
    assert response.url == reverse("demands:config:team", args=[team.pk])
    admin_client.post(response.url, {"user": staff_user.pk, "action": "add"})
    assert list(team.members.all()) == [staff_user]
    admin_client.post(response.url, {"user": staff_user.pk, "action": "remove"})
    assert not team.members.exists()


def test_api_key_is_shown_once_and_can_be_revoked(admin_client):
    url = reverse("demands:config:api-keys")
    response = admin_client.post(url, {"name": "shop widget", "source": "web_app", "allowed_origins": "",
                                       "rate_per_minute": 600, "burst": 100})
    page = response.content.decode()
    key = SourceApiKey.objects.get()
    plain = page.split('<pre class="payload mono">')[1].split("</pre>")[0]
    assert plain.startswith("umk_") and api_key_authenticate(presented=plain) == key
    assert response["Cache-Control"] == "no-store" and plain not in admin_client.get(url).content.decode()
    admin_client.post(reverse("demands:config:api-key-revoke", args=[key.pk]))
    key.refresh_from_db()
    assert not key.is_active


def test_pages_need_the_model_permissions(client, staff_user, viewer_user, plain_user):
    rule = Rule.objects.create(name="r", set_priority="high")
    client.force_login(plain_user)
    assert client.get(reverse("demands:config:rules")).status_code == 302  # to the login page
    client.force_login(staff_user)  # a triager without configuration permissions
    assert client.get(reverse("demands:config:rules")).status_code == 403
    assert client.get(reverse("demands:config:api-keys")).status_code == 403
    assert client.post(reverse("demands:config:rule-toggle", args=[rule.pk]), {"enabled": "0"}).status_code == 403
    viewer = grant(viewer_user, "view_rule")
    client.force_login(viewer)
    assert client.get(reverse("demands:config:rules")).status_code == 200
    assert client.post(reverse("demands:config:rule-toggle", args=[rule.pk]), {"enabled": "0"}).status_code == 403
    assert client.post(reverse("demands:config:rule", args=[rule.pk]), {**RULE, "name": "renamed"}).status_code == 403
    assert client.post(reverse("demands:config:rule", args=[rule.pk]), {**RULE, "_preview": "1"}).status_code == 200
    rule.refresh_from_db()
    assert rule.enabled and rule.name == "r"
    assert client.get(reverse("demands:config:teams")).status_code == 403
    editor = grant(viewer_user, "change_team")
    client.force_login(editor)
    assert client.get(reverse("demands:config:teams")).status_code == 200
    assert client.post(reverse("demands:config:teams"), {"name": "x"}).status_code == 403  # adding needs add_team


def test_admin_index_hides_internal_tables_but_their_pages_still_open(admin_client):
    page = admin_client.get(reverse("admin:index")).content.decode()
    for internal in ("flowbucket", "latencybucket", "lagsample", "backlogsample", "consumerheartbeat"):
        assert f"/admin/demands/{internal}/" not in page
    assert "/admin/demands/rule/" in page and "/admin/demands/demand/" in page
    assert admin_client.get("/admin/demands/flowbucket/").status_code == 200
    assert "/admin/demands/flowbucket/" not in admin_client.get("/admin/demands/").content.decode()


def test_preview_speaks_chinese(admin_client):
    store(["payment failed"] * 2)
    response = admin_client.post(reverse("demands:config:rule-new"), {**RULE, "sample": "10", "_preview": "1"},
                                 HTTP_ACCEPT_LANGUAGE="zh-Hans")
    page = response.content.decode()
    assert "将在最近 2 个需求中匹配 2 个。" in page and "将把最近 2 个中的 2 个设为紧急" in page
