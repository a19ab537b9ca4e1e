"""Who may do what: anonymous, non-staff, viewer, triager, admin × every URL and method.

The matrix is checked against `unified_msg_site.urls`: a URL added without a row here fails
`test_every_url_has_a_row_in_the_matrix`, and a row whose URL is gone fails too. Writes are judged
by their effect in the database, not only by the status code. Websockets are in
test_websocket_security.py; CSRF on every write at the bottom of this file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Callable

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import URLResolver, get_resolver, reverse

from demands.intake import dlq
from demands.pipeline.persist import persist_batch
from demands.models import Demand, DemandEvent, DemandGroup, Follow, Notification, RejectedMessage, SavedView, Status, Subscription, UserPreference
from demands.monitoring.models import Alert, AlertRule, Silence
from demands.sla.models import SlaPolicy

from .conftest import REFERENCE, record, role

pytestmark = pytest.mark.django_db

ROLES = ["anonymous", "non_staff", "viewer", "triager", "admin"]
STAFF = {"viewer", "triager", "admin"}
TRIAGERS = {"triager", "admin"}


@dataclass
class World:
    user: object | None
    demand: Demand
    other: Demand
    saved_view: SavedView | None
    notification: Notification | None
    rejected: RejectedMessage | None = None
    alert: Alert | None = None
    silence: Silence | None = None


def make_user(django_user_model, name: str):
    if name == "anonymous":
        return None
    # No passwords: sessions come from force_login, and hashing would make the matrix slow.
    if name == "admin":
        return django_user_model.objects.create_superuser(username="admin", password=None)
    user = django_user_model.objects.create_user(username=name, password=None, is_staff=name != "non_staff")
    if name in ("viewer", "triager"):
        user.groups.add(role({"viewer": "Viewers", "triager": "Triagers"}[name]))
    return user


def build_world(django_user_model, role_name: str) -> World:
    persist_batch([record(REFERENCE, offset=1), record({**REFERENCE, "id": "other"}, offset=2)])
    demand, other = Demand.objects.order_by("message_id")
    user = make_user(django_user_model, role_name)
    # Rows owned by someone, for the per-user writes: the user's own when signed in.
    owner = user or django_user_model.objects.create_user(username="owner", password=None, is_staff=True)
    saved_view = SavedView.objects.create(user=owner, name="mine", query="status=new")
    notification = Notification.objects.create(user=owner, demand=demand, text="assigned to you")
    persist_batch([record(b"{not json", offset=3)])
    rejected = RejectedMessage.objects.get()
    from django.utils import timezone

    now = timezone.now()
    rule = AlertRule.objects.create(name="lag", kind=AlertRule.Kind.choices[0][0])
    alert = Alert.objects.create(rule=rule, rule_name="lag", kind=rule.kind, key="k", severity=rule.severity,
                                 title="Lag is high", opened_at=now, last_seen_at=now)
    silence = Silence.objects.create(rule=rule, key_pattern="k", starts_at=now, ends_at=now + timezone.timedelta(hours=1))
    return World(user=user, demand=demand, other=other, saved_view=saved_view, notification=notification,
                  rejected=rejected, alert=alert, silence=silence)


def client_for(world: World, **kwargs) -> Client:
    client = Client(**kwargs)
    if world.user is not None:
        client.force_login(world.user)
    return client


# -- the matrix -----------------------------------------------------------------------------------
PUBLIC = "public"  # anyone; answers without a server error
PAGE = "page"  # GET; staff only, others to the login page
TRIAGE = "triage"  # form POST that changes a demand; triagers and admins only
STAFF_WRITE = "staff-write"  # form POST that changes the user's own things; any staff
API_READ = "api-read"  # JSON; 401 anonymous, 403 non-staff
API_WRITE = "api-write"  # JSON change to a demand; triagers and admins only, 403 for viewers
DLQ_WRITE = "dlq-write"  # form POST on a rejected message; triagers and admins; viewers 403
ALERT_WRITE = "alert-write"  # acknowledge, silence, end a silence; triagers and admins; viewers 403
MACHINE = "machine"  # probes: the same answer for everybody, never a login redirect
POLICY_EDIT = "policy-edit"  # SLA policy forms: staff allowed to change policies (admins here); other staff 403
TO_SECTION = "to-section"  # /config/: staff are sent on to the first settings tab they may open; others to the login page
CONFIG = "config"  # configuration (rules, teams, API keys, alert-rule changes): users with the model permissions
# (admins here): never refused; other staff 403; others to the login page
METRICS = "metrics"  # Prometheus: staff sessions or the bearer token; 401 (not a login page) for others


@dataclass
class Row:
    method: str
    kind: str
    data: Callable[[World], dict] = lambda w: {}
    effect: Callable[[World], bool] | None = None  # did the write happen?


def sla_policy_form(name: str) -> dict:
    return {"name": name, "order": "1", "priorities": ["urgent"], "respond_minutes": "30", "at_risk_percent": "80",
            "steps-TOTAL_FORMS": "0", "steps-INITIAL_FORMS": "0", "steps-MIN_NUM_FORMS": "0", "steps-MAX_NUM_FORMS": "1000"}


def config_rule(w):
    from demands.models import Rule

    return Rule.objects.get_or_create(name="Route payments", defaults={"set_priority": "high", "match_keywords": "支付"})[0]


def config_team(w):
    from demands.models import Team

    return Team.objects.get_or_create(name="Payments")[0]


def config_key(w):
    from demands.models import SourceApiKey
    from demands.intake.keys import api_key_create

    return SourceApiKey.objects.filter(name="widget").first() or api_key_create(name="widget", source="web_app")[0]


def closed_first(w):
    """Data for archiving: the demand is resolved first (only closed demands are archived)."""
    Demand.objects.filter(pk=w.demand.pk).update(status=Status.RESOLVED)
    return {"version": Demand.objects.get(pk=w.demand.pk).version}


def archived_first(w):
    from django.utils import timezone

    Demand.objects.filter(pk=w.demand.pk).update(status=Status.RESOLVED, archived_at=timezone.now())
    return {"version": Demand.objects.get(pk=w.demand.pk).version}


def demand_field(name, value):
    return lambda w: getattr(Demand.objects.get(pk=w.demand.pk), name) == value


def commented(w):
    return DemandEvent.objects.filter(demand=w.demand, kind=DemandEvent.Kind.COMMENT).exists()


MATRIX: dict[str, list[Row]] = {
    "": [Row("get", PUBLIC)],
    "login/": [Row("get", PUBLIC), Row("post", PUBLIC, lambda w: {"username": "nobody", "password": "wrong"})],
    "logout/": [Row("post", PUBLIC)],
    "i18n/setlang/": [Row("post", PUBLIC, lambda w: {"language": "en"})],
    "jsi18n/": [Row("get", PUBLIC)],  # the scripts' strings: the sign-in page needs them too
    "demands/": [Row("get", PAGE)],
    "demands/export.csv": [Row("get", PAGE)],
    "demands/count/": [Row("get", PAGE)],
    "demands/bulk/": [Row("post", TRIAGE, lambda w: {"ids": [w.demand.pk], "status": Status.TRIAGED},
                          demand_field("status", Status.TRIAGED))],
    "demands/<int:pk>/": [Row("get", PAGE)],
    "demands/<int:pk>/status/": [Row("post", TRIAGE, lambda w: {"status": Status.TRIAGED, "version": w.demand.version},
                                     demand_field("status", Status.TRIAGED))],
    "demands/<int:pk>/priority/": [Row("post", TRIAGE, lambda w: {"priority": "urgent"}, demand_field("priority", "urgent"))],
    "demands/<int:pk>/assign/": [Row("post", TRIAGE, lambda w: {"assignee": "me"},
                                     lambda w: Demand.objects.get(pk=w.demand.pk).assignee_id is not None)],
    "demands/<int:pk>/comment/": [Row("post", TRIAGE, lambda w: {"body": "looked at it"}, commented)],
    "demands/<int:pk>/duplicate/": [Row("post", TRIAGE, lambda w: {"original": str(w.other.pk)},
                                        lambda w: Demand.objects.get(pk=w.demand.pk).duplicate_of_id == w.other.pk)],
    "views/": [Row("post", STAFF_WRITE, lambda w: {"name": "urgent ones", "return_query": "priority=urgent"},
                   lambda w: SavedView.objects.filter(name="urgent ones").exists())],
    "views/<int:pk>/delete/": [Row("post", STAFF_WRITE, effect=lambda w: not SavedView.objects.filter(pk=w.saved_view.pk).exists())],
    "groups/": [Row("get", PAGE)],
    "groups/bulk/": [Row("post", TRIAGE, lambda w: {"groups": [w.demand.group_id], "priority": "urgent"},
                         lambda w: DemandGroup.objects.get(pk=w.demand.group_id).priority == "urgent")],
    "groups/<int:pk>/": [Row("get", PAGE)],
    "groups/<int:pk>/triage/": [Row("post", TRIAGE, lambda w: {"status": Status.RESOLVED},
                                    lambda w: DemandGroup.objects.get(pk=w.demand.group_id).status == Status.RESOLVED)],
    "groups/<int:pk>/unmerge/": [Row("post", TRIAGE, effect=lambda w: DemandGroup.objects.filter(merged_into__isnull=False).count() == 0)],
    "notifications/": [Row("get", PAGE)],
    "notifications/read/": [Row("post", STAFF_WRITE, effect=lambda w: Notification.objects.get(pk=w.notification.pk).read_at is not None)],
    "rejected/": [Row("get", PAGE)],
    "preferences/": [Row("get", PAGE), Row("post", STAFF_WRITE, lambda w: {"language": "zh-hans"},
                                           lambda w: UserPreference.objects.filter(language="zh-hans").exists())],
    "api/demands/": [Row("get", API_READ)],
    "api/groups/": [Row("get", API_READ)],
    "api/demands/<int:pk>/": [Row("get", API_READ), Row("patch", API_WRITE, lambda w: {"priority": "urgent"},
                                                        demand_field("priority", "urgent"))],
    "api/demands/<int:pk>/history/": [Row("get", API_READ)],
    "api/demands/<int:pk>/comments/": [Row("post", API_WRITE, lambda w: {"body": "from the API"}, commented)],
    "rejected/<int:pk>/": [Row("get", PAGE)],
    "rejected/<int:pk>/replay/": [Row("post", DLQ_WRITE, effect=lambda w: RejectedMessage.objects.get(pk=w.rejected.pk).status == "replayed")],
    "rejected/<int:pk>/discard/": [Row("post", DLQ_WRITE, effect=lambda w: RejectedMessage.objects.get(pk=w.rejected.pk).status == "discarded")],
    "monitoring/": [Row("get", PAGE)],
    "monitoring/series.json": [Row("get", PAGE)],
    "monitoring/summary/": [Row("get", PUBLIC)],  # a header fragment: empty for anyone but staff
    "monitoring/alerts/": [Row("get", PAGE)],
    "monitoring/alerts/<int:pk>/": [Row("get", PAGE)],
    "monitoring/alerts/<int:pk>/acknowledge/": [Row("post", ALERT_WRITE, effect=lambda w: Alert.objects.get(pk=w.alert.pk).acknowledged_at is not None)],
    "monitoring/alerts/<int:pk>/silence/": [Row("post", ALERT_WRITE, lambda w: {"minutes": "30"}, lambda w: Silence.objects.count() == 2)],
    "monitoring/silences/<int:pk>/expire/": [Row("post", ALERT_WRITE, effect=lambda w: Silence.objects.get(pk=w.silence.pk).ends_at <= __import__("django.utils.timezone").utils.timezone.now())],
    "sla/": [Row("get", PAGE)],
    "sla/new/": [Row("get", POLICY_EDIT), Row("post", POLICY_EDIT, lambda w: sla_policy_form("Gold"),
                                              lambda w: SlaPolicy.objects.filter(name="Gold").exists())],
    "sla/<int:pk>/": [Row("get", POLICY_EDIT), Row("post", POLICY_EDIT, lambda w: sla_policy_form("Renamed"),
                                                   lambda w: SlaPolicy.objects.filter(name="Renamed").exists())],
    "metrics": [Row("get", METRICS)],  # METRICS_TOKEN for scrapers, METRICS_PUBLIC=1 opens it (MONITORING.md)
    # demands/outbound: settings, delivery log, Follow, and the one-click link (a team channel's:
    # it names no user, so it acts as whoever signs in; a viewer is refused like an alert write).
    "notifications/settings/": [Row("get", PAGE), Row("post", STAFF_WRITE, lambda w: {"section": "mine", "route": ["comment:"]},
                                                      lambda w: Subscription.objects.filter(kind="comment").exists())],
    "notifications/deliveries/": [Row("get", PAGE)],
    "demands/<int:pk>/follow/": [Row("post", STAFF_WRITE, lambda w: {"follow": "1"}, lambda w: Follow.objects.exists())],
    "act/<str:token>/": [Row("get", PAGE), Row("post", ALERT_WRITE,
                                               effect=lambda w: Demand.objects.get(pk=w.demand.pk).assignee_id is not None)],
    "demands/<int:pk>/triage/": [Row("post", TRIAGE, lambda w: {"priority": "urgent", "version": w.demand.version},
                                     demand_field("priority", "urgent"))],
    "demands/<int:pk>/archive/": [Row("post", TRIAGE, closed_first,
                                      lambda w: Demand.objects.get(pk=w.demand.pk).archived_at is not None)],
    "demands/<int:pk>/restore/": [Row("post", TRIAGE, archived_first,
                                      lambda w: Demand.objects.get(pk=w.demand.pk).archived_at is None)],
    "monitoring/rules/": [Row("get", PAGE)],
    "monitoring/rules/new/": [Row("get", PAGE), Row("post", CONFIG, lambda w: {"name": "more lag", "kind": "time_to_drain",
                                                                                "threshold": "600", "severity": "warning"})],
    "monitoring/rules/<int:pk>/": [Row("get", PAGE), Row("post", CONFIG, lambda w: {"name": "renamed", "kind": w.alert.kind,
                                                                                     "threshold": "60", "severity": "warning"})],
    "monitoring/rules/<int:pk>/toggle/": [Row("post", CONFIG, lambda w: {"enabled": "0"},
                                              lambda w: not AlertRule.objects.get(pk=w.alert.rule_id).enabled)],
    "config/": [Row("get", TO_SECTION)],
    "config/rules/": [Row("get", CONFIG)],
    "config/rules/new/": [Row("get", CONFIG), Row("post", CONFIG, lambda w: {"name": "Urgent words", "order": "5", "enabled": "on",
                                                                             "match_keywords": "宕机", "set_priority": "urgent"})],
    "config/rules/<int:pk>/": [Row("get", CONFIG), Row("post", CONFIG, lambda w: {"name": "Renamed rule", "order": "5", "enabled": "on",
                                                                                  "match_keywords": "支付", "set_priority": "high"})],
    "config/rules/<int:pk>/enabled/": [Row("post", CONFIG, lambda w: {"enabled": "0"},
                                           lambda w: not type(config_rule(w)).objects.get(pk=config_rule(w).pk).enabled)],
    "config/rules/<int:pk>/move/": [Row("post", CONFIG, lambda w: {"direction": "up"})],
    "config/teams/": [Row("get", CONFIG), Row("post", CONFIG, lambda w: {"name": "Growth"})],
    "config/teams/<int:pk>/": [Row("get", CONFIG), Row("post", CONFIG, lambda w: {"name": "Payments"})],
    "config/api-keys/": [Row("get", CONFIG), Row("post", CONFIG, lambda w: {"name": "shop", "source": "shop", "rate_per_minute": "600", "burst": "100"})],
    "config/api-keys/<int:pk>/revoke/": [Row("post", CONFIG, effect=lambda w: not type(config_key(w)).objects.get(pk=config_key(w).pk).is_active)],
    "healthz": [Row("get", MACHINE)],
    "readyz": [Row("get", MACHINE)],
}
# URL prefixes whose every route is checked by a test of their own: the admin below; HTTP ingest
# authenticates by API key, not by role (tests/intake/test_api_ingest.py: missing, wrong,
# revoked and other-source keys).
OWN_TESTS = ("admin/", "api/ingest")


def all_routes(patterns=None, prefix=""):
    for pattern in patterns if patterns is not None else get_resolver().url_patterns:
        if isinstance(pattern, URLResolver):
            yield from all_routes(pattern.url_patterns, prefix + str(pattern.pattern))
        else:
            yield prefix + str(pattern.pattern), pattern


def test_every_url_has_a_row_in_the_matrix():
    routes = {route for route, _ in all_routes() if not route.startswith(OWN_TESTS)}
    assert routes - MATRIX.keys() == set(), "new URL(s): add a row to MATRIX saying who may use them"
    assert MATRIX.keys() - routes == set(), "MATRIX rows for URLs that no longer exist"


def url_of(route: str, world: World) -> str:
    if route.startswith("views/"):
        pk = world.saved_view.pk
    elif route.startswith("rejected/"):
        pk = world.rejected.pk
    elif route.startswith("monitoring/alerts/"):
        pk = world.alert.pk
    elif route.startswith("monitoring/silences/"):
        pk = world.silence.pk
    elif route.startswith("groups/<int:pk>/unmerge/"):
        pk = merged_group(world).pk
    elif route.startswith("groups/"):
        pk = world.demand.group_id
    elif route.startswith("act/"):
        from demands.outbound import links

        return "/" + route.replace("<str:token>", links.token(user_id=None, demand_id=world.demand.pk, action="claim"))
    elif route.startswith("monitoring/rules/"):
        pk = world.alert.rule_id
    elif route.startswith("config/rules/"):
        pk = config_rule(world).pk
    elif route.startswith("config/teams/"):
        pk = config_team(world).pk
    elif route.startswith("config/api-keys/"):
        pk = config_key(world).pk
    elif route.startswith("sla/"):
        pk = SlaPolicy.objects.get_or_create(name="Urgent", defaults={"match_priorities": "urgent", "respond_minutes": 30})[0].pk
    else:
        pk = world.demand.pk
    return "/" + route.replace("<int:pk>", str(pk))


def merged_group(world: World):
    """A group (another source's) merged into the world's, for unmerge."""
    persist_batch([record({**REFERENCE, "id": "ios", "source": "ios_app"}, offset=9)])
    merged = DemandGroup.objects.get(source="ios_app")
    Demand.objects.filter(group=merged).update(group_id=world.demand.group_id)
    merged.merged_into_id = world.demand.group_id
    merged.save(update_fields=["merged_into"])
    return merged


class FakeDelivery:
    topic, partition, offset = "demand-topic", 0, 42


def send(client: Client, method: str, url: str, data: dict, kind: str, **extra):
    if kind in (API_READ, API_WRITE) and method != "get":
        return getattr(client, method)(url, json.dumps(data), content_type="application/json", **extra)
    if method == "patch":
        return client.patch(url, json.dumps(data), content_type="application/json", **extra)
    return getattr(client, method)(url, data, **extra)


CASES = [(route, row, role_name) for route, rows in MATRIX.items() for row in rows for role_name in ROLES]


@pytest.mark.parametrize(("route", "row", "role_name"), CASES,
                         ids=[f"{row.method.upper()} /{route} as {role_name}" for route, row, role_name in CASES])
def test_permission_matrix(django_user_model, monkeypatch, route, row, role_name):
    monkeypatch.setattr(dlq, "deliver", lambda records: [FakeDelivery()])  # replay without a broker
    world = build_world(django_user_model, role_name)
    client = client_for(world)
    response = send(client, row.method, url_of(route, world), row.data(world), row.kind)
    to_login = response.status_code == 302 and response["Location"].startswith("/login/")
    staff, triager = role_name in STAFF, role_name in TRIAGERS

    if row.kind == PUBLIC:
        assert response.status_code < 500
        assert response.status_code not in (401, 403)
    elif row.kind == PAGE:
        assert response.status_code == 200 if staff else to_login
    elif row.kind in (TRIAGE, STAFF_WRITE):
        may = triager if row.kind == TRIAGE else staff
        if not staff:
            assert to_login
        else:
            assert response.status_code == 302 and not to_login  # back to the page, with a message
        assert row.effect(world) is may
    elif row.kind in (DLQ_WRITE, ALERT_WRITE):
        if not staff:
            assert to_login
        else:
            assert response.status_code == (302 if triager else 403)
        assert row.effect(world) is triager
    elif row.kind == POLICY_EDIT:
        may = role_name == "admin"
        if not staff:
            assert to_login
        else:
            assert response.status_code == ((302 if row.method == "post" else 200) if may else 403)
        if row.effect is not None:
            assert row.effect(world) is may
    elif row.kind == TO_SECTION:
        assert (response.status_code == 302 and not to_login) if staff else to_login
    elif row.kind == CONFIG:
        may = role_name == "admin"
        if not staff:
            assert to_login
        elif may:
            assert response.status_code in (200, 302) and not to_login
        else:
            assert response.status_code == 403
        if row.effect is not None:
            assert row.effect(world) is may
    elif row.kind == METRICS:
        assert response.status_code == (200 if staff else 401)
    elif row.kind == MACHINE:
        assert response.status_code in (200, 503)  # readyz: 503 while a dependency is down
    elif row.kind == API_READ:
        assert response.status_code == {"anonymous": 401, "non_staff": 403}.get(role_name, 200)
    elif row.kind == API_WRITE:
        expected = {"anonymous": 401, "non_staff": 403, "viewer": 403}.get(role_name)
        if expected:
            assert response.status_code == expected
        else:
            assert response.status_code in (200, 201)
        assert row.effect(world) is triager
    else:
        raise AssertionError(f"unknown kind {row.kind}")


OUR_ROUTES = [route for route in MATRIX if route and not route.startswith(("login/", "logout/", "i18n/"))]


@pytest.mark.parametrize("route", OUR_ROUTES)
def test_methods_outside_the_matrix_are_refused(django_user_model, route):
    world = build_world(django_user_model, "admin")
    client = client_for(world)
    allowed = {row.method for row in MATRIX[route]}
    for method in {"get", "post", "put", "patch", "delete"} - allowed:
        response = getattr(client, method)(url_of(route, world))
        assert response.status_code == 405, f"{method.upper()} /{route}"


def test_staff_cannot_delete_someone_elses_saved_view_or_read_their_notifications(django_user_model):
    world = build_world(django_user_model, "triager")
    intruder = make_user(django_user_model, "viewer")
    client = Client()
    client.force_login(intruder)
    client.post(f"/views/{world.saved_view.pk}/delete/")
    client.post("/notifications/read/", {"ids": [world.notification.pk]})
    client.post("/notifications/read/")  # "mark all": only the intruder's own
    assert SavedView.objects.filter(pk=world.saved_view.pk).exists()
    assert Notification.objects.get(pk=world.notification.pk).read_at is None


def test_inactive_staff_are_treated_as_anonymous(django_user_model):
    world = build_world(django_user_model, "triager")
    world.user.is_active = False
    world.user.save()
    client = Client()
    client.force_login(world.user)
    assert client.get("/demands/")["Location"].startswith("/login/")
    assert client.get("/api/demands/").status_code == 401


# -- the admin ------------------------------------------------------------------------------------
SITE_VIEWS = {"index", "login", "logout", "password_change", "password_change_done", "autocomplete", "jsi18n",
              "view_on_site", "app_list"}
MODEL_VIEWS = ("changelist", "add", "history", "delete", "change")
EXTRA_ADMIN_VIEWS = {"auth_user_password_change"}  # test_admin_password_change_is_for_superusers_only


def registered_models():
    return {f"{model._meta.app_label}_{model._meta.model_name}": model for model in admin.site._registry}


def test_every_admin_url_is_a_site_view_or_a_model_view_checked_below():
    models = registered_models()
    for route, pattern in all_routes():
        if not route.startswith("admin/") or pattern.name is None or pattern.name in SITE_VIEWS | EXTRA_ADMIN_VIEWS:
            continue
        prefix, _, view = pattern.name.rpartition("_")
        assert prefix in models and view in MODEL_VIEWS, f"admin URL {route} ({pattern.name}) has no permission check"


def admin_object(model, world: World):
    if model is Demand:
        return world.demand
    return model.objects.first()


@pytest.mark.parametrize("model_key", sorted(registered_models()))
@pytest.mark.parametrize("role_name", ROLES)
def test_admin_model_pages_are_for_superusers_and_the_dlq_for_triagers(django_user_model, model_key, role_name):
    world = build_world(django_user_model, role_name)
    client = client_for(world)
    model = registered_models()[model_key]
    obj = admin_object(model, world)
    model_admin = admin.site._registry[model]
    for view in MODEL_VIEWS:
        args = () if view in ("changelist", "add") else (obj.pk,) if obj else None
        if args is None:
            continue
        response = client.get(reverse(f"admin:{model_key}_{view}", args=args))
        if role_name in ("anonymous", "non_staff"):
            assert response.status_code == 302 and "/admin/login/" in response["Location"], view
        elif role_name == "triager" and model_key == "demands_rejectedmessage":
            # Triagers work the dead-letter queue (change permission): look and act, never add or delete.
            assert response.status_code == (403 if view in ("add", "delete") else 200), view
        elif role_name in ("viewer", "triager"):
            assert response.status_code == 403, view  # staff, but no model permissions
        else:
            may_add = view != "add" or model_admin.has_add_permission(type("R", (), {"user": world.user})())
            assert response.status_code == (200 if may_add else 403), view


@pytest.mark.parametrize("role_name", ROLES)
def test_admin_password_change_is_for_superusers_only(django_user_model, role_name):
    world = build_world(django_user_model, role_name)
    victim = django_user_model.objects.create_user(username="victim", password=None, is_staff=True)
    response = client_for(world).post(reverse("admin:auth_user_password_change", args=(victim.pk,)),
                                      {"password1": "Taken-Over-1234", "password2": "Taken-Over-1234"})
    victim.refresh_from_db()
    assert victim.has_usable_password() is (role_name == "admin")
    if role_name != "admin":
        assert response.status_code in (302, 403)


@pytest.mark.parametrize("role_name", ROLES)
def test_admin_triage_action_works_only_for_admins(django_user_model, role_name):
    world = build_world(django_user_model, role_name)
    client = client_for(world)
    client.post(reverse("admin:demands_demand_changelist"),
                {"action": "set_status_triaged", "_selected_action": [world.demand.pk]})
    assert (Demand.objects.get(pk=world.demand.pk).status == Status.TRIAGED) is (role_name == "admin")


@pytest.mark.parametrize("role_name", ROLES)
def test_admin_index_is_for_staff_only(django_user_model, role_name):
    client = client_for(build_world(django_user_model, role_name))
    response = client.get("/admin/")
    if role_name in STAFF:
        assert response.status_code == 200
    else:
        assert response.status_code == 302 and "/admin/login/" in response["Location"]


# -- CSRF -----------------------------------------------------------------------------------------
WRITES = [(route, row) for route, rows in MATRIX.items() for row in rows if row.method != "get"]


def csrf_client(world: World) -> tuple[Client, str]:
    client = client_for(world, enforce_csrf_checks=True)
    client.get("/login/" if world.user is None else "/demands/")  # sets the csrftoken cookie
    return client, client.cookies["csrftoken"].value


@pytest.mark.parametrize(("route", "row"), WRITES, ids=[f"{row.method.upper()} /{route}" for route, row in WRITES])
def test_every_state_changing_request_needs_the_csrf_token(django_user_model, route, row):
    world = build_world(django_user_model, "admin")
    client, token = csrf_client(world)
    url = url_of(route, world)
    refused = send(client, row.method, url, row.data(world), row.kind)
    assert refused.status_code == 403
    if row.effect:
        assert row.effect(world) is False
    # As htmx sends it: the token from <body hx-headers> in the X-CSRFToken header.
    accepted = send(client, row.method, url, row.data(world), row.kind, HTTP_X_CSRFTOKEN=token, HTTP_HX_REQUEST="true")
    assert accepted.status_code != 403
    if row.effect:
        assert row.effect(world) is True


def test_admin_actions_need_the_csrf_token(django_user_model):
    world = build_world(django_user_model, "admin")
    client, _ = csrf_client(world)
    response = client.post(reverse("admin:demands_demand_changelist"),
                           {"action": "set_status_triaged", "_selected_action": [world.demand.pk]})
    assert response.status_code == 403
    assert Demand.objects.get(pk=world.demand.pk).status == Status.NEW


POST_FORM = re.compile(r"<form\b[^>]*method=\"post\"[^>]*>(.*?)</form>", re.S | re.I)


@pytest.mark.parametrize("page", ["/demands/", "/demands/?status=new", "detail", "/notifications/", "/preferences/",
                                  "/groups/", "/rejected/", "/login/"])
def test_every_post_form_carries_the_token_and_htmx_sends_it_too(django_user_model, page):
    world = build_world(django_user_model, "admin")
    client, token = csrf_client(world)
    if page == "/login/":
        client = Client()
    html = client.get(url_of("demands/<int:pk>/", world) if page == "detail" else page).content.decode()
    forms = POST_FORM.findall(html)
    assert forms, "the page has forms that post"
    for body in forms:
        assert 'name="csrfmiddlewaretoken"' in body
    if page != "/login/":
        assert re.search(r"<body hx-headers='\{\"X-CSRFToken\": \"[^\"]+\"\}'>", html)


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/", "/\\evil.example", "javascript:alert(1)"])
def test_next_parameters_never_redirect_off_site(django_user_model, target):
    world = build_world(django_user_model, "triager")
    client = client_for(world)
    for url, data in [("/preferences/", {"language": "en", "next": target}), ("/notifications/read/", {"next": target})]:
        location = client.post(url, data)["Location"]
        assert location.startswith("/") and not location.startswith(("//", "/\\")), url
    world.user.set_password("pw-triager-123")
    world.user.save()
    client.logout()
    location = client.post(f"/login/?next={target}", {"username": "triager", "password": "pw-triager-123"})["Location"]
    assert location == "/demands/"
