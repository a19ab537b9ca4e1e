"""The Settings tabs: configuration in one place — rules, teams, API keys, SLA policies, alert
rules and notification settings — each tab shown to whoever may look at that page."""

import re

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from demands.config import access

pytestmark = pytest.mark.django_db

ALL = ["rule", "team", "sourceapikey", "slapolicy", "alertrule", "notifications"]


def grant(user, *codenames):
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="demands", codename__in=codenames))
    return type(user).objects.get(pk=user.pk)  # a fresh instance: permissions are cached per instance


def tab_keys(user):
    return [key for key, _url, _label in access.tabs(user)]


def tab_links(html: str) -> list[str]:
    nav = re.search(r'<nav class="config-tabs tabs".*?</nav>', html, re.S)
    return re.findall(r'href="([^"]+)"', nav.group(0)) if nav else []


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user(username="plainstaff", password="x", is_staff=True)


def test_tabs_follow_the_permissions(django_user_model, staff):
    assert tab_keys(django_user_model.objects.create_superuser(username="root", password="x")) == ALL
    assert tab_keys(staff) == ["notifications"]  # everyone chooses their own notifications
    assert tab_keys(grant(staff, "view_slapolicy", "change_alertrule")) == ["slapolicy", "alertrule", "notifications"]
    assert tab_keys(django_user_model.objects.create_user(username="customer", password="x")) == []
    staff.is_active = False
    assert tab_keys(staff) == []


def test_every_settings_page_shows_the_same_tabs_with_its_own_active(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser(username="root", password="x"))
    expected = [url for _key, url, _label in access.tabs(client.get(reverse("demands:config:rules")).wsgi_request.user)]
    assert expected == [reverse(name) for name in ("demands:config:rules", "demands:config:teams", "demands:config:api-keys",
                                                   "demands:sla-policies", "demands:monitoring:rules", "demands:outbound-settings")]
    for url in expected:
        html = client.get(url).content.decode()
        assert tab_links(html) == expected, url
        assert re.search(rf'<a href="{re.escape(url)}" class="active" aria-current="page">', html), url


def test_settings_link_and_index_for_staff_without_configuration_permissions(client, staff):
    client.force_login(staff)
    page = client.get(reverse("demands:list")).content.decode()
    assert f'href="{reverse("demands:config:index")}"' in page  # the top bar's Settings link
    assert client.get(reverse("demands:config:index"))["Location"] == reverse("demands:outbound-settings")
    assert tab_links(client.get(reverse("demands:sla-policies")).content.decode()) == [reverse("demands:outbound-settings")]
