"""Triage pages: filters and sorting, detail forms, roles, conflicts, bulk, saved views, CSV export,
notifications, preferences and groups."""

import csv
import html
import io
import re
from datetime import datetime, timezone as dt_timezone

import pytest
from django.urls import reverse
from django.utils import timezone, translation

from demands import live, services
from demands.pipeline.persist import persist_batch
from demands.models import PRIORITY_RANK, Demand, DemandEvent, Notification, Priority, SavedView, Status, Team, UserPreference
from demands.selectors import DemandFilters

from .conftest import REFERENCE, record, role

pytestmark = pytest.mark.django_db



@pytest.fixture(autouse=True)
def _isolated(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    yield
    # A request that activates a user's language or time zone leaves it on this thread.
    translation.deactivate()
    timezone.deactivate()


def utc(day: int, hour: int = 12) -> datetime:
    return datetime(2025, 4, day, hour, tzinfo=dt_timezone.utc)


def ingest(*messages) -> list[Demand]:
    created = persist_batch([record({**REFERENCE, **m}, offset=i) for i, m in enumerate(messages)]).created
    return [Demand.objects.get(pk=d.pk) for d in created]


def shown_ids(response) -> list[int]:
    return [int(pk) for pk in re.findall(r'<tr id="demand-(\d+)"', response.content.decode())]


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user(username="bob", password="x", is_staff=True)


@pytest.fixture
def other_triager(django_user_model):
    user = django_user_model.objects.create_user(username="alice", password="x", is_staff=True)
    user.groups.add(role("Triagers"))
    return user


@pytest.fixture
def catalogue(staff_user, bob):
    """Six demands spread over every filter dimension; names say what each one is."""
    mine, other = Team.objects.create(name="Mine"), Team.objects.create(name="Other")
    mine.members.add(staff_user)
    d = dict(zip(
        ["pay1", "npe", "slow", "disk", "pay2", "timeout"],
        ingest(
            {"id": "f0", "priority": "urgent", "tags": ["支付", "vip"], "content": "支付失败 order 1"},
            {"id": "f1", "type": "log_exception", "source": "order-service", "priority": "high", "tags": ["bug"],
             "content": "NullPointerException at line 42"},
            {"id": "f2", "source": "mobile_app", "content": "页面加载太慢,请优化。"},
            {"id": "f3", "type": "alert", "source": "monitor", "priority": "low", "tags": ["bug"], "content": "Disk FULL on host 7"},
            {"id": "f4", "tags": ["vip"], "content": "支付失败 order 2"},
            {"id": "f5", "type": "log_exception", "source": "order-service", "priority": "urgent", "tags": ["bug", "支付"],
             "content": "Timeout calling pay"},
        ),
    ))
    staged = {
        "pay1": {"assignee": staff_user, "team": mine, "received_at": utc(1)},
        "npe": {"assignee": bob, "status": Status.RESOLVED, "received_at": utc(1, 18)},
        "slow": {"team": other, "received_at": utc(2, 20)},  # 2025-04-03 04:00 in Shanghai
        "disk": {"assignee": staff_user, "status": Status.TRIAGED, "received_at": utc(3)},
        "pay2": {"received_at": utc(5)},
        "timeout": {"team": mine, "received_at": utc(5, 23)},
    }
    for name, fields in staged.items():
        Demand.objects.filter(pk=d[name].pk).update(**fields)
        d[name].refresh_from_db()
    d["teams"] = {"mine": mine, "other": other}
    return d


def filter_cases(c) -> list[tuple[str, set[str]]]:
    return [
        ("status=resolved", {"npe"}),
        ("priority=urgent", {"pay1", "timeout"}),
        ("type=log_exception", {"npe", "timeout"}),
        ("source=web_app", {"pay1", "pay2"}),
        ("assignee=me", {"pay1", "disk"}),
        ("assignee=none", {"slow", "pay2", "timeout"}),
        (f"assignee={c['npe'].assignee_id}", {"npe"}),
        ("team=mine", {"pay1", "timeout"}),
        ("team=none", {"npe", "disk", "pay2"}),
        (f"team={c['teams']['other'].pk}", {"slow"}),
        ("tag=vip", {"pay1", "pay2"}),
        ("tag=bug", {"npe", "disk", "timeout"}),
        (f"group={c['pay1'].group_id}", {"pay1", "pay2"}),
        ("date_from=2025-04-03", {"disk", "pay2", "timeout"}),
        ("date_to=2025-04-02", {"pay1", "npe", "slow"}),
        ("date_from=2025-04-02&date_to=2025-04-03", {"slow", "disk"}),
        ("search=nullpointer", {"npe"}),
        ("search=支付失败", {"pay1", "pay2"}),
        ("search=f3", {"disk"}),  # an exact message id
        ("priority=urgent&team=mine&tag=bug", {"timeout"}),
    ]


def names_of(c, pks) -> set[str]:
    return {name for name, demand in c.items() if name != "teams" and demand.pk in set(pks)}


# -- filters ------------------------------------------------------------------------------------

def test_each_filter_on_the_list_page_shows_exactly_the_matching_demands(staff_client, catalogue):
    for query, expected in filter_cases(catalogue):
        assert names_of(catalogue, shown_ids(staff_client.get("/demands/?" + query))) == expected, query


def test_sql_filters_and_live_row_filters_agree_on_every_demand(staff_user, catalogue):
    rows = {d.pk: live.row_payload(d) for d in Demand.objects.select_related("assignee", "team")}
    for query, expected in filter_cases(catalogue):
        filters = DemandFilters.from_params(dict(p.split("=") for p in query.split("&")), user=staff_user)
        in_sql = set(filters.apply(Demand.objects.all()).values_list("pk", flat=True))
        in_live = {pk for pk, row in rows.items() if filters.matches(row)}
        assert in_sql == in_live, query
        assert names_of(catalogue, in_sql) == expected, query


def test_date_filters_count_days_in_the_users_time_zone(staff_client, staff_user, catalogue):
    UserPreference.objects.create(user=staff_user, time_zone="Asia/Shanghai")
    assert names_of(catalogue, shown_ids(staff_client.get("/demands/?date_from=2025-04-03&date_to=2025-04-03"))) == {"slow", "disk"}


def test_a_chinese_tag_filter_finds_its_demands(staff_client, staff_user, catalogue):
    assert names_of(catalogue, shown_ids(staff_client.get("/demands/?tag=支付"))) == {"pay1", "timeout"}
    filters = DemandFilters.from_params({"tag": "支付"}, user=staff_user)
    assert set(filters.apply(Demand.objects.all())) == {catalogue["pay1"], catalogue["timeout"]}


def test_the_tag_filter_is_exact_like_the_live_filter(staff_user, catalogue):
    filters = DemandFilters.from_params({"tag": "BUG"}, user=staff_user)
    assert list(filters.apply(Demand.objects.all())) == []


def test_view_tabs_link_to_mine_my_teams_and_unassigned(staff_client, catalogue):
    page = html.unescape(staff_client.get("/demands/?priority=urgent").content.decode())
    for query in ("?priority=urgent&assignee=me", "?priority=urgent&team=mine", "?priority=urgent&assignee=none"):
        assert f'href="{query}"' in page


@pytest.mark.parametrize("sort", ["oldest", "priority"])
def test_sorted_pages_visit_every_demand_once_in_order(sort, staff_client, catalogue, settings):
    settings.DEMANDS_PAGE_SIZE = 2
    Demand.objects.filter(pk=catalogue["pay2"].pk).update(priority=Priority.URGENT)  # three urgent: a tie across a page boundary
    seen, url = [], f"/demands/?sort={sort}"
    while url:
        response = staff_client.get(url)
        seen += shown_ids(response)
        link = re.search(r'<a href="\?([^"]+)" rel="next">', response.content.decode())
        url = "/demands/?" + html.unescape(link.group(1)) if link else None
        assert len(seen) <= Demand.objects.count()
    demands = list(Demand.objects.all())
    if sort == "oldest":
        expected = sorted(d.pk for d in demands)
    else:
        expected = [d.pk for d in sorted(demands, key=lambda d: (PRIORITY_RANK[d.priority], -d.pk))]
    assert seen == expected


# -- detail page and triage forms ---------------------------------------------------------------

def test_a_triager_sees_the_triage_forms_with_the_version_it_loaded(staff_client):
    # One form for status, priority, owner and comment (demands/triage/), one for duplicates.
    [demand] = ingest({})
    Demand.objects.filter(pk=demand.pk).update(version=7)
    page = staff_client.get(f"/demands/{demand.pk}/").content.decode()
    for name in ("triage", "duplicate"):
        assert f'action="{reverse(f"demands:{name}", args=[demand.pk])}"' in page
    assert page.count('name="version" value="7"') == 2


def test_a_viewer_sees_no_triage_forms(client, viewer_user):
    [demand] = ingest({})
    client.force_login(viewer_user)
    page = client.get(f"/demands/{demand.pk}/").content.decode()
    assert "页面加载太慢" in page
    for name in ("triage", "status", "priority", "assign", "duplicate", "comment"):
        assert reverse(f"demands:{name}", args=[demand.pk]) not in page
    assert 'id="bulk-form"' not in client.get("/demands/").content.decode()


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("status", {"status": "resolved", "version": "0"}),
        ("priority", {"priority": "urgent", "version": "0"}),
        ("assign", {"assignee": "me", "version": "0"}),
        ("comment", {"body": "hello"}),
        ("duplicate", {"original": "ORIGINAL", "version": "0"}),
    ],
)
def test_a_viewer_posting_a_triage_form_is_refused_with_a_message_and_nothing_changes(name, data, client, viewer_user):
    original, demand = ingest({"id": "o"}, {"id": "d"})
    client.force_login(viewer_user)
    data = {k: (str(original.pk) if v == "ORIGINAL" else v) for k, v in data.items()}
    response = client.post(reverse(f"demands:{name}", args=[demand.pk]), data, follow=True)
    assert response.redirect_chain[-1][0] == reverse("demands:detail", args=[demand.pk])
    assert messages_of(response) == ["You can look at demands but not change them."]
    demand.refresh_from_db()
    assert (demand.status, demand.priority, demand.assignee, demand.version) == (Status.NEW, Priority.NORMAL, None, 0)
    assert DemandEvent.objects.count() == 0


def test_a_non_staff_post_is_sent_to_login_and_changes_nothing(client, plain_user):
    [demand] = ingest({})
    client.force_login(plain_user)
    response = client.post(reverse("demands:status", args=[demand.pk]), {"status": "resolved"})
    assert response["Location"].startswith("/login/")
    demand.refresh_from_db()
    assert demand.status == Status.NEW


def test_a_status_form_changes_the_status_and_the_history_shows_it(staff_client):
    [demand] = ingest({})
    response = staff_client.post(reverse("demands:status", args=[demand.pk]), {"status": "in_progress", "version": "0"}, follow=True)
    assert messages_of(response) == []
    demand.refresh_from_db()
    assert (demand.status, demand.version) == (Status.IN_PROGRESS, 1)
    event = DemandEvent.objects.get()
    assert f'id="event-{event.pk}"' in response.content.decode()


def test_a_form_posted_from_a_stale_page_says_changed_meanwhile_and_changes_nothing(staff_client, other_triager):
    [demand] = ingest({})
    services.demand_set_priority(demand=demand, priority=Priority.HIGH, actor=other_triager, expected_version=0)
    response = staff_client.post(reverse("demands:status", args=[demand.pk]), {"status": "resolved", "version": "0"}, follow=True)
    [message] = messages_of(response)
    assert "changed meanwhile by alice" in message
    demand.refresh_from_db()
    assert (demand.status, demand.priority, demand.version) == (Status.NEW, Priority.HIGH, 1)


def test_an_invalid_transition_from_the_form_is_shown_as_a_message(staff_client):
    [demand] = ingest({})
    Demand.objects.filter(pk=demand.pk).update(status=Status.RESOLVED)
    response = staff_client.post(reverse("demands:status", args=[demand.pk]), {"status": "in_progress"}, follow=True)
    assert messages_of(response) == ["A Resolved demand cannot become In progress."]


def test_the_assign_form_takes_me_and_a_team(staff_client, staff_user):
    [demand] = ingest({})
    team = Team.objects.create(name="Payments")
    staff_client.post(reverse("demands:assign", args=[demand.pk]), {"assignee": "me", "team": str(team.pk), "version": "0"})
    demand.refresh_from_db()
    assert (demand.assignee, demand.team) == (staff_user, team)


@pytest.mark.parametrize("who", ["99999", "non-staff"])
def test_the_assign_form_refuses_someone_who_is_not_staff(who, staff_client, plain_user):
    [demand] = ingest({})
    value = str(plain_user.pk) if who == "non-staff" else who
    response = staff_client.post(reverse("demands:assign", args=[demand.pk]), {"assignee": value}, follow=True)
    assert messages_of(response) == ["No such staff member."]
    demand.refresh_from_db()
    assert demand.assignee is None


def test_comments_are_escaped_and_links_are_clickable(staff_client):
    [demand] = ingest({})
    staff_client.post(reverse("demands:comment", args=[demand.pk]), {"body": "<b>bold</b> see https://example.com/x"})
    page = staff_client.get(f"/demands/{demand.pk}/").content.decode()
    assert "<b>bold</b>" not in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page
    assert '<a href="https://example.com/x"' in page


def test_the_duplicate_form_takes_a_number_with_or_without_hash(staff_client):
    original, demand, other = ingest({"id": "o"}, {"id": "d"}, {"id": "x"})
    staff_client.post(reverse("demands:duplicate", args=[demand.pk]), {"original": f"#{original.pk}", "version": "0"})
    demand.refresh_from_db()
    assert (demand.status, demand.duplicate_of) == (Status.DUPLICATE, original)
    response = staff_client.post(reverse("demands:duplicate", args=[other.pk]), {"original": "abc"}, follow=True)
    assert "by its number" in messages_of(response)[0]
    other.refresh_from_db()
    assert other.status == Status.NEW


# -- bulk ---------------------------------------------------------------------------------------

def test_bulk_form_changes_the_selected_demands_and_reports_the_ones_it_could_not(staff_client):
    fresh, closed, also_fresh, untouched = ingest({"id": "a"}, {"id": "b"}, {"id": "c"}, {"id": "d"})
    Demand.objects.filter(pk=closed.pk).update(status=Status.RESOLVED)
    response = staff_client.post(
        reverse("demands:bulk"),
        {"ids": [fresh.pk, closed.pk, also_fresh.pk], "status": "in_progress", "return_query": "priority=normal"},
    )
    assert response["Location"] == "/demands/?priority=normal"
    statuses = dict(Demand.objects.values_list("pk", "status"))
    assert statuses == {fresh.pk: Status.IN_PROGRESS, closed.pk: Status.RESOLVED, also_fresh.pk: Status.IN_PROGRESS, untouched.pk: Status.NEW}
    shown = messages_of(staff_client.get("/demands/"))
    assert shown == ["Changed 2 demand(s).", f"#{closed.pk}: A Resolved demand cannot become In progress."]


def test_bulk_priority_and_unassign(staff_client, staff_user):
    a, b = ingest({"id": "a"}, {"id": "b"})
    Demand.objects.update(assignee=staff_user)
    staff_client.post(reverse("demands:bulk"), {"ids": [a.pk, b.pk], "priority": "low", "assignee": "none"})
    assert set(Demand.objects.values_list("priority", "assignee")) == {(Priority.LOW, None)}


def test_bulk_assigning_a_person_keeps_each_demands_team(staff_client, staff_user):
    [demand] = ingest({})
    team = Team.objects.create(name="Payments")
    Demand.objects.filter(pk=demand.pk).update(team=team)
    staff_client.post(reverse("demands:bulk"), {"ids": [demand.pk], "assignee": "me"})
    demand.refresh_from_db()
    assert demand.assignee == staff_user
    assert demand.team == team


def test_bulk_without_a_selection_or_without_a_change_only_warns(staff_client):
    [demand] = ingest({})
    staff_client.post(reverse("demands:bulk"), {"status": "resolved"})
    staff_client.post(reverse("demands:bulk"), {"ids": [demand.pk]})
    assert messages_of(staff_client.get("/demands/")) == [
        "Select at least one demand first.", "Choose a status, a priority or an assignee to apply."
    ]
    demand.refresh_from_db()
    assert demand.version == 0


def test_bulk_by_a_viewer_is_refused(client, viewer_user):
    [demand] = ingest({})
    client.force_login(viewer_user)
    response = client.post(reverse("demands:bulk"), {"ids": [demand.pk], "status": "resolved"}, follow=True)
    assert messages_of(response) == ["You can look at demands but not change them."]
    demand.refresh_from_db()
    assert demand.status == Status.NEW


# -- saved views --------------------------------------------------------------------------------

def test_a_saved_view_keeps_the_filters_but_not_the_page_position(staff_client, staff_user):
    staff_client.post(reverse("demands:saved-view-create"), {"name": "我的紧急", "return_query": "priority=urgent&assignee=me&before=42"})
    view = SavedView.objects.get()
    assert (view.user, view.name, view.query) == (staff_user, "我的紧急", "priority=urgent&assignee=me")
    page = html.unescape(staff_client.get("/demands/").content.decode())
    assert re.search(r'<a href="\?priority=urgent&assignee=me"[^>]*>★ 我的紧急</a>', page)


def test_saving_a_view_needs_a_name_and_some_filters(staff_client):
    staff_client.post(reverse("demands:saved-view-create"), {"name": " ", "return_query": "priority=urgent"})
    staff_client.post(reverse("demands:saved-view-create"), {"name": "all", "return_query": "before=3"})
    assert SavedView.objects.count() == 0
    assert messages_of(staff_client.get("/demands/")) == [
        "Give the view a name.", "Choose some filters first: a view without filters is just the list."
    ]


def test_saving_a_view_under_an_existing_name_replaces_it(staff_client):
    staff_client.post(reverse("demands:saved-view-create"), {"name": "v", "return_query": "priority=urgent"})
    staff_client.post(reverse("demands:saved-view-create"), {"name": "v", "return_query": "priority=low"})
    assert list(SavedView.objects.values_list("name", "query")) == [("v", "priority=low")]


def test_users_see_and_delete_only_their_own_saved_views(staff_client, staff_user, bob):
    mine = SavedView.objects.create(user=staff_user, name="mine", query="status=new")
    theirs = SavedView.objects.create(user=bob, name="theirs", query="status=resolved")
    page = staff_client.get("/demands/").content.decode()
    assert "★ mine" in page and "★ theirs" not in page
    staff_client.post(reverse("demands:saved-view-delete", args=[theirs.pk]))
    assert SavedView.objects.filter(pk=theirs.pk).exists()
    response = staff_client.post(reverse("demands:saved-view-delete", args=[mine.pk]), {"return_query": "status=new"})
    assert response["Location"] == "/demands/?status=new"
    assert not SavedView.objects.filter(pk=mine.pk).exists()


# -- CSV export ---------------------------------------------------------------------------------

def export(client, query="") -> tuple[str, list[list[str]]]:
    response = client.get("/demands/export.csv?" + query)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="demands-')
    text = b"".join(response.streaming_content).decode("utf-8")
    return text, list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))


def test_csv_export_has_a_bom_a_header_and_chinese_content(staff_client, staff_user):
    [demand] = ingest({"tags": ["性能", "web"]})
    Demand.objects.filter(pk=demand.pk).update(assignee=staff_user)
    text, rows = export(staff_client)
    assert text.startswith("\ufeff")
    assert rows[0] == ["pk", "id", "source", "type", "priority", "status", "assignee", "team", "tags", "timestamp", "received_at", "content"]
    assert rows[1][:10] == [str(demand.pk), "123456", "web_app", "user_feedback", "normal", "new", "triager", "", "性能,web",
                            "2025-04-05T10:30:00+00:00"]
    assert rows[1][11] == "页面加载太慢,请优化。"
    assert len(rows) == 2


def test_csv_export_applies_the_lists_filters(staff_client, catalogue):
    _, rows = export(staff_client, "priority=urgent&team=mine")
    assert {row[1] for row in rows[1:]} == {"f0", "f5"}
    _, rows = export(staff_client, "assignee=me&search=disk")
    assert [row[1] for row in rows[1:]] == ["f3"]


@pytest.mark.parametrize("dangerous", ["=HYPERLINK(\"http://x\")", "+1+1", "-2+3", "@SUM(A1)", "\t=1"])
def test_csv_cells_that_a_spreadsheet_would_run_as_formulas_are_prefixed(dangerous, staff_client):
    ingest({"content": dangerous, "tags": [dangerous.strip()]})
    _, rows = export(staff_client)
    assert rows[1][11] == "'" + dangerous
    assert rows[1][8] == "'" + dangerous.strip()


def test_csv_export_needs_staff(client, plain_user):
    assert client.get("/demands/export.csv")["Location"].startswith("/login/")
    client.force_login(plain_user)
    assert client.get("/demands/export.csv")["Location"].startswith("/login/")


# -- notifications ------------------------------------------------------------------------------

def test_notifications_page_lists_only_the_users_own_and_the_bell_counts_unread(staff_client, staff_user, bob):
    [demand] = ingest({})
    Notification.objects.create(user=staff_user, demand=demand, text="bob assigned demand to you")
    Notification.objects.create(user=bob, demand=demand, text="for bob only")
    page = staff_client.get("/notifications/").content.decode()
    assert "bob assigned demand to you" in page and "for bob only" not in page
    assert '<span id="notification-count" class="count">1</span>' in page


def test_marking_one_notification_read_leaves_the_others_unread(staff_client, staff_user, bob):
    [demand] = ingest({})
    first, second = (Notification.objects.create(user=staff_user, demand=demand, text=t) for t in ("one", "two"))
    theirs = Notification.objects.create(user=bob, demand=demand, text="theirs")
    response = staff_client.post(reverse("demands:notifications-read"), {"ids": [first.pk, theirs.pk]})
    assert response["Location"] == reverse("demands:notifications")
    assert set(Notification.objects.filter(read_at__isnull=True).values_list("pk", flat=True)) == {second.pk, theirs.pk}
    staff_client.post(reverse("demands:notifications-read"))
    assert set(Notification.objects.filter(read_at__isnull=True).values_list("pk", flat=True)) == {theirs.pk}


def test_mark_read_returns_only_to_a_page_of_this_site(staff_client):
    assert staff_client.post(reverse("demands:notifications-read"), {"next": "/demands/?status=new"})["Location"] == "/demands/?status=new"
    assert staff_client.post(reverse("demands:notifications-read"), {"next": "https://evil.example/"})["Location"] == reverse("demands:notifications")


def test_an_assignment_made_on_the_page_shows_up_in_the_assignees_notifications(client, staff_client, bob):
    [demand] = ingest({})
    staff_client.post(reverse("demands:assign", args=[demand.pk]), {"assignee": str(bob.pk)})
    client.force_login(bob)
    page = client.get("/notifications/").content.decode()
    assert f"assigned demand #{demand.pk} to you" in page


# -- preferences --------------------------------------------------------------------------------

def test_choosing_chinese_renders_the_dashboard_in_chinese(staff_client, staff_user):
    ingest({})
    response = staff_client.post(reverse("demands:preferences"), {"language": "zh-hans", "time_zone": ""})
    assert response["Location"] == reverse("demands:preferences")
    assert UserPreference.objects.get(user=staff_user).language == "zh-hans"
    page = staff_client.get("/demands/").content.decode()
    assert '<html lang="zh-hans">' in page
    assert "导出 CSV" in page and "Export CSV" not in page


def test_the_language_switch_returns_to_the_page_it_was_used_on(staff_client, staff_user):
    response = staff_client.post(reverse("demands:preferences"), {"language": "zh-hans", "next": "/demands/?status=new"})
    assert response["Location"] == "/demands/?status=new"
    staff_client.post(reverse("demands:preferences"), {"language": "en", "next": "/demands/"})
    assert "Export CSV" in staff_client.get("/demands/").content.decode()


def test_times_are_shown_in_the_users_time_zone(staff_client, staff_user):
    [demand] = ingest({})  # occurred at 2025-04-05 10:30 UTC
    assert "2025-04-05 10:30:00 UTC" in staff_client.get(f"/demands/{demand.pk}/").content.decode()
    staff_client.post(reverse("demands:preferences"), {"time_zone": "Asia/Shanghai"})
    assert UserPreference.objects.get(user=staff_user).time_zone == "Asia/Shanghai"
    page = staff_client.get(f"/demands/{demand.pk}/").content.decode()
    assert "2025-04-05 18:30:00 CST" in page


@pytest.mark.parametrize(("field", "value", "error"), [("language", "fr", "Unknown language."), ("time_zone", "Mars/Olympus", "Unknown time zone.")])
def test_unknown_languages_and_time_zones_are_refused(field, value, error, staff_client, staff_user):
    response = staff_client.post(reverse("demands:preferences"), {field: value}, follow=True)
    assert error in messages_of(response)
    preference = UserPreference.objects.get(user=staff_user)
    assert (preference.language, preference.time_zone) == ("", "")


# -- groups -------------------------------------------------------------------------------------

def test_groups_page_shows_each_group_with_its_count_and_a_link_to_its_demands(staff_client):
    first, _, other = ingest({"id": "a", "content": "订单 1001 支付超时"}, {"id": "b", "content": "订单 2002 支付超时"}, {"id": "c", "content": "别的问题"})
    page = staff_client.get("/groups/").content.decode()  # the list, grouped (tests/test_groups.py has the rest)
    group_row = re.search(rf'<tr id="group-{first.group_id}"[^>]*>(.*?)</tr>', page, re.S).group(1)
    assert '<td class="mono count-cell">2</td>' in group_row
    assert f'href="/demands/?group={first.group_id}&amp;view=all"' in group_row and "订单 1001 支付超时" in group_row
    assert f'id="group-{other.group_id}"' in page
    assert names_of({"a": first, "c": other}, shown_ids(staff_client.get(f"/demands/?group={first.group_id}"))) == {"a"}
