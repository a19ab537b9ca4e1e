"""The list row and SLA badge built in Python (demands/list_rows.py): the exact markup the list
page, the live stream and the detail page's badge share, in both languages and time zones, with
every value escaped; and the page uses it (one query for the rows however many there are)."""

from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone, translation

from demands import list_rows, live
from demands.models import Demand, Team
from demands.pipeline.persist import persist_batch

from .conftest import REFERENCE, record

NOW = datetime(2026, 3, 1, 8, 0, tzinfo=dt_timezone.utc)


@pytest.fixture
def demand(django_user_model):
    created = persist_batch([record({**REFERENCE, "content": "页面 & <b>慢</b>", "tags": ["login", "<x>"]}, offset=1)]).created[0]
    Demand.objects.filter(pk=created.pk).update(
        received_at=NOW - timedelta(hours=1), category="perf", priority="urgent", status="triaged",
        sla_state="at_risk", sla_due_at=NOW + timedelta(minutes=12),
        assignee=django_user_model.objects.create_user(username="li<", password=None),
        team=Team.objects.create(name="Pay&Co"))
    return Demand.objects.select_related("assignee", "team").get(pk=created.pk)


def expected_row(pk: int, *, select: str, urgent: str, triaged: str, badge: str, received: str, title: str, new: str = "") -> str:
    url = f"/demands/{pk}/"
    return (
        f'<tr id="demand-{pk}" data-id="{pk}" data-href="{url}"{new}>'
        f'<td class="select"><input type="checkbox" name="ids" value="{pk}" form="bulk-form" aria-label="{select}"></td>'
        f'<td class="mono"><a href="{url}">{pk}</a></td>'
        f'<td><span class="badge priority-urgent">{urgent}</span></td>'
        f'<td><span class="badge status-triaged">{triaged}</span></td>'
        '<td><span class="badge type">user_feedback</span></td>'
        f'<td class="content"><a href="{url}">页面 &amp; &lt;b&gt;慢&lt;/b&gt;</a><div class="tags"><span class="tag category">perf</span>'
        '<span class="tag">login</span><span class="tag">&lt;x&gt;</span></div></td>'
        '<td class="source">web_app</td>'
        '<td class="assignee">li&lt; <span class="muted">Pay&amp;Co</span></td>'
        f'<td class="time"><time data-relative datetime="{received}" title="{title}">{title[:19]}</time></td>'
        f'<td class="sla-cell">{badge}</td></tr>'
    )


@pytest.mark.django_db
def test_row_in_english_utc(demand):
    with translation.override("en"), timezone.override("UTC"):
        html = list_rows.row(demand, now=NOW)
    badge = ('<span class="sla sla-at_risk" data-sla-state="at_risk">due <time data-relative datetime="2026-03-01T08:12:00+00:00" '
             'title="2026-03-01 08:12:00 UTC">in 12\xa0minutes</time></span>')
    assert html == expected_row(demand.pk, select=f"Select demand {demand.pk}", urgent="Urgent", triaged="Triaged", badge=badge,
                                received="2026-03-01T07:00:00+00:00", title="2026-03-01 07:00:00 UTC")


@pytest.mark.django_db
def test_row_in_chinese_shanghai_time_and_new(demand):
    with translation.override("zh-hans"), timezone.override("Asia/Shanghai"):
        html = list_rows.row(demand, is_new=True, now=NOW)
    badge = ('<span class="sla sla-at_risk" data-sla-state="at_risk">到期 <time data-relative datetime="2026-03-01T16:12:00+08:00" '
             'title="2026-03-01 16:12:00 CST">12\xa0分钟后</time></span>')
    assert html == expected_row(demand.pk, select=f"选择需求 {demand.pk}", urgent="紧急", triaged="已分拣", badge=badge,
                                received="2026-03-01T15:00:00+08:00", title="2026-03-01 15:00:00 CST", new=' class="is-new"')


@pytest.mark.django_db
def test_badge_overdue_detail_and_none(demand):
    demand.sla_due_at, demand.sla_state = NOW - timedelta(minutes=5), "breached"
    with translation.override("en"), timezone.override("UTC"):
        assert list_rows.sla_badge(demand, detail=True, now=NOW) == (
            '<span class="sla sla-breached sla-overdue" data-sla-state="breached">overdue <time data-relative '
            'datetime="2026-03-01T07:55:00+00:00" title="2026-03-01 07:55:00 UTC">5\xa0minutes ago</time> · Breached</span>')
        demand.sla_due_at, demand.sla_state = None, "met"
        assert list_rows.sla_badge(demand, now=NOW) == '<span class="sla sla-met" data-sla-state="met">Met</span>'
        demand.sla_state = ""
        assert list_rows.sla_badge(demand, now=NOW) == ""


@pytest.mark.django_db
def test_long_content_is_truncated_and_nobody_is_a_dash():
    created = persist_batch([record({**REFERENCE, "content": "字" * 400}, offset=1)]).created[0]
    html = list_rows.row(Demand.objects.get(pk=created.pk))
    assert "字" * 299 + "…</a>" in html and "字" * 300 not in html
    assert '<td class="assignee"><span class="muted">—</span></td>' in html


@pytest.mark.django_db
def test_live_rows_are_the_same_markup(demand):
    with timezone.override("UTC"):
        payload = live.row_payload(demand, is_new=False, languages=["en", "zh-hans"])
        for code in ("en", "zh-hans"):
            with translation.override(code):
                assert payload["html"][code] == list_rows.row(demand)


@pytest.mark.django_db
def test_list_page_renders_rows_with_one_query_for_them(staff_client, django_user_model):
    team = Team.objects.create(name="Ops")
    persist_batch([record({**REFERENCE, "id": str(i), "content": f"row {i}"}, offset=i) for i in range(30)])
    Demand.objects.update(team=team, assignee=django_user_model.objects.create_user(username="who", password=None))
    staff_client.get("/demands/?view=all")  # the session, caches: what the first request pays
    with CaptureQueriesContext(connection) as few:
        response = staff_client.get("/demands/?view=all")
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('<tr id="demand-') == 30 and html.count('<span class="muted">Ops</span>') == 30
    persist_batch([record({**REFERENCE, "id": f"m{i}", "content": f"more {i}"}, offset=100 + i) for i in range(20)])
    Demand.objects.update(team=team)
    staff_client.get("/demands/?view=all")
    with CaptureQueriesContext(connection) as more:
        assert staff_client.get("/demands/?view=all").content.decode().count('<tr id="demand-') == 50
    assert len(more) == len(few), "rows must not cost a query each (assignee and team come with them)"


@pytest.mark.django_db
def test_group_row_markup_with_a_regression_and_without_triage(django_user_model):
    from demands.groups import rows
    from demands.models import DemandGroup

    group = DemandGroup.objects.create(
        fingerprint="f", type="log_exception", source="api<", title="Timeout & <retry>", count=7, priority="high",
        status="in_progress", first_seen=NOW - timedelta(days=2), last_seen=NOW - timedelta(minutes=3),
        regressed_at=NOW - timedelta(hours=1), team=Team.objects.create(name="Ops"))
    group.spark_points, group.spark_total = "0.0,19.0 96.0,1.0", 3
    url = f"/groups/{group.pk}/"
    with translation.override("en"), timezone.override("UTC"):
        html = rows.group_row(group, can_triage=False)
        assert html == (
            f'<tr id="group-{group.pk}" data-group="{group.pk}"><td class="select"></td><td class="mono count-cell">7</td>'
            '<td class="spark-cell"><svg class="spark" width="96" height="20" viewBox="0 0 96 20" role="img" aria-label="3 in the last 24 hours">'
            '<polyline points="0.0,19.0 96.0,1.0" fill="none" stroke="currentColor" stroke-width="1.5" stroke-linejoin="round"/></svg></td>'
            '<td><span class="badge priority-high">High</span></td>'
            '<td><span class="badge status-in_progress">In progress</span> <span class="badge regression" '
            'title="Regression: reopened by a new demand on 2026-03-01 07:00">Regression</span></td>'
            '<td><span class="badge type">log_exception</span></td>'
            f'<td class="content"><a href="{url}">Timeout &amp; &lt;retry&gt;</a> <a class="muted" href="/demands/?group={group.pk}&amp;view=all">messages</a></td>'
            '<td class="source">api&lt;</td><td class="assignee"> <span class="muted">Ops</span></td>'
            '<td class="time"><time data-relative datetime="2026-02-27T08:00:00+00:00" title="2026-02-27 08:00:00 UTC">2026-02-27 08:00</time></td>'
            '<td class="time"><time data-relative datetime="2026-03-01T07:57:00+00:00" title="2026-03-01 07:57:00 UTC">2026-03-01 07:57</time></td></tr>')
    group.status, group.priority = "resolved", ""
    with translation.override("zh-hans"):
        html = rows.group_row(group, can_triage=True)
    assert f'aria-label="选择分组 {group.pk}"' in html and "regression" not in html and '<span class="muted">—</span>' in html


@pytest.mark.django_db
def test_the_list_loads_only_what_a_row_reads_and_reads_nothing_else(staff_client, demand):
    """list_rows.FIELDS is all the page loads; a row touching another field would cost a query a row."""
    from demands import selectors

    page = selectors.demand_page(filters=selectors.DemandFilters.from_params({}), only=list_rows.FIELDS)
    with CaptureQueriesContext(connection) as queries:
        list_rows.rows(page.items)
    assert len(queries) == 0
    for search in ("", "页面"):
        html = staff_client.get(f"/demands/?view=all&search={search}").content.decode()
        assert f'<tr id="demand-{demand.pk}"' in html and "Pay&amp;Co" in html
