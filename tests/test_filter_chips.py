"""The list's filter chips: every active filter shown and removable, those without a control too."""

import re
from html import unescape
from urllib.parse import parse_qs

import pytest

from demands.filter_chips import clear_query, filter_chips
from demands.models import Demand, DemandGroup, Team
from demands.pipeline.persist import persist_batch
from demands.selectors import DemandFilters

from .conftest import REFERENCE, record

pytestmark = pytest.mark.django_db

CHIP = re.compile(r'<a class="chip" href="\?([^"]*)" data-filter="(\w+)"[^>]*>(.*?)</a>', re.S)


def chips_on(client, query: str) -> dict[str, tuple[dict, str]]:
    """{filter name: (the query its chip links to, the chip's text)} on the list page for `query`."""
    html = client.get("/demands/?" + query).content.decode()
    return {
        name: (parse_qs(unescape(href)), re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", "", text))).strip())
        for href, name, text in CHIP.findall(html)
    }


def test_a_group_filter_without_a_control_gets_a_chip_that_names_the_group(staff_client):
    persist_batch([record(REFERENCE, offset=1)])
    group = DemandGroup.objects.get()
    chips = chips_on(staff_client, f"group={group.pk}")
    assert list(chips) == ["group"]
    remove_query, text = chips["group"]
    assert remove_query == {}
    assert text.startswith(f"Group: #{group.pk} ") and group.title[:10] in text


def test_each_chip_removes_only_its_own_filter_and_keeps_the_sort(staff_client, staff_user):
    team = Team.objects.create(name="Payments")
    chips = chips_on(staff_client, f"status=new&priority=urgent&type=bug&assignee=me&team={team.pk}&tag=login&search=kiwi&sort=oldest")
    assert list(chips) == ["status", "priority", "type", "assignee", "team", "tag", "search"]
    assert chips["status"] == (
        {"priority": ["urgent"], "type": ["bug"], "assignee": ["me"], "team": [str(team.pk)], "tag": ["login"], "search": ["kiwi"], "sort": ["oldest"]},
        "Status: New ×",
    )
    assert chips["team"][1] == "Team: Payments ×"
    assert chips["assignee"][1] == "Assignee: Me ×"
    assert chips["search"][1] == "Search: “kiwi” ×"


def test_no_filters_no_chips_and_an_unknown_id_still_shows_its_chip(staff_client):
    assert chips_on(staff_client, "") == {}
    assert chips_on(staff_client, "sort=oldest") == {}
    assert chips_on(staff_client, "group=999999")["group"][1] == "Group: #999999 ×"
    assert chips_on(staff_client, "assignee=424242")["assignee"][1] == "Assignee: #424242 ×"


def test_the_filters_button_counts_the_active_filters(staff_client):
    html = staff_client.get("/demands/?status=new&type=bug&group=5").content.decode()
    assert "Filters (3)" in html


def test_an_empty_filtered_list_offers_to_clear_the_filters_keeping_the_sort(staff_client):
    html = staff_client.get("/demands/?type=nothing-like-this&sort=oldest").content.decode()
    empty = html[html.index('id="demand-empty"'):]
    assert "No demands match these filters." in empty
    assert 'href="?sort=oldest">Clear filters</a>' in empty[:400]


def test_chips_and_clear_query_from_the_filters_alone():
    filters = DemandFilters.from_params({"date_from": "2026-01-02", "date_to": "2026-01-03", "source": "web", "sort": "priority"})
    chips = filter_chips(filters=filters)
    assert [(chip.name, chip.value) for chip in chips] == [("source", "web"), ("date_from", "2026-01-02"), ("date_to", "2026-01-03")]
    assert clear_query(filters=filters) == "sort=priority"
    assert Demand.objects.count() == 0  # no query of demands to build chips


def test_chips_are_in_chinese_for_a_chinese_reader(staff_client):
    html = staff_client.get("/demands/?status=new&assignee=none", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    texts = {name: text for _href, name, text in CHIP.findall(html)}
    assert "Status" not in texts["status"] and "Assignee" not in texts["assignee"]
