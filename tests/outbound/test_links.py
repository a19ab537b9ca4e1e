"""One-click links: signed, expiring, bound to their recipient; GET confirms, POST acts through the services."""

from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.urls import reverse
from django.utils import timezone

from demands.models import DemandEvent, Status
from demands.outbound import links

from .conftest import make_demand

pytestmark = pytest.mark.django_db


def path_of(url: str) -> str:
    return urlsplit(url).path


def link(user, demand, action="claim", now=None):
    return path_of(links.action_url(user_id=user.pk if user else None, demand_id=demand.pk, action=action, now=now))


def test_opening_a_link_only_shows_a_confirmation(client, alice):
    demand = make_demand()
    client.force_login(alice)
    response = client.get(link(alice, demand))
    assert response.status_code == 200 and b'method="post"' in response.content
    demand.refresh_from_db()
    assert demand.assignee is None and not DemandEvent.objects.filter(demand=demand).exists()  # mail scanners prefetch


def test_the_confirmation_post_claims_as_the_recipient_and_records_history(client, alice):
    demand = make_demand()
    client.force_login(alice)
    response = client.post(link(alice, demand))
    assert response.status_code == 302 and response["Location"] == reverse("demands:detail", args=[demand.pk])
    demand.refresh_from_db()
    assert demand.assignee == alice
    [event] = DemandEvent.objects.filter(demand=demand)
    assert event.kind == DemandEvent.Kind.ASSIGNMENT and event.actor == alice


def test_acknowledge_and_resolve_change_the_status_through_the_services(client, alice):
    demand = make_demand()
    client.force_login(alice)
    client.post(link(alice, demand, "acknowledge"))
    demand.refresh_from_db()
    assert demand.status == Status.TRIAGED
    client.post(link(alice, demand, "resolve"))
    demand.refresh_from_db()
    assert demand.status == Status.RESOLVED and demand.resolved_at is not None
    assert [e.new_value for e in DemandEvent.objects.filter(demand=demand, kind="status")] == ["triaged", "resolved"]


def test_without_a_session_the_link_goes_to_login_and_back(client, alice):
    demand = make_demand()
    url = link(alice, demand)
    response = client.get(url)
    assert response.status_code == 302 and reverse("login") in response["Location"] and "next=" in response["Location"]
    client.force_login(alice)
    assert client.get(url).status_code == 200


def test_another_users_link_is_refused_with_a_clear_page(client, alice, bob):
    demand = make_demand()
    client.force_login(bob)
    response = client.post(link(alice, demand))
    assert response.status_code == 403 and "此链接是发给其他人的" in response.content.decode()  # bob reads 中文
    demand.refresh_from_db()
    assert demand.assignee is None


def test_an_expired_link_is_refused(client, alice):
    demand = make_demand()
    client.force_login(alice)
    response = client.post(link(alice, demand, now=timezone.now() - timedelta(days=4)))
    assert response.status_code == 410 and b"expired" in response.content
    demand.refresh_from_db()
    assert demand.assignee is None


def test_a_tampered_link_is_refused(client, alice, bob):
    demand = make_demand()
    client.force_login(alice)
    token = path_of(links.action_url(user_id=alice.pk, demand_id=demand.pk, action="claim")).split("/")[2]
    payload, rest = token.split(":", 1)
    forged = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + ":" + rest
    response = client.post(reverse("demands:outbound-action", args=[forged]))
    assert response.status_code == 400 and b"not valid" in response.content
    assert links.read(token).user_id == alice.pk  # the untouched one reads


def test_a_viewer_who_may_not_triage_is_told_so(client, viewer_user):
    demand = make_demand()
    client.force_login(viewer_user)
    response = client.post(link(viewer_user, demand))
    assert response.status_code == 403
    demand.refresh_from_db()
    assert demand.assignee is None


def test_a_team_channels_link_acts_as_whoever_signs_in(client, bob):
    demand = make_demand()
    client.force_login(bob)
    client.post(link(None, demand))
    demand.refresh_from_db()
    assert demand.assignee == bob
