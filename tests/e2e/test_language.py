"""Journey 4: the top bar's language button switches the whole UI to 中文 and back."""

import re
import uuid

import pytest
from playwright.sync_api import expect

from .conftest import wait_live


def test_top_bar_switches_the_language_to_chinese_and_back(pages, artifacts):
    page = pages.open("polyglot", "/demands/?type=e2e_gamma")
    html = page.locator("html")
    expect(html).to_have_attribute("lang", "en")

    page.locator(".lang-switch").get_by_role("button", name="中文").click()
    expect(html).to_have_attribute("lang", "zh-hans")
    expect(page.locator("h1")).to_have_text("需求")
    expect(page).to_have_url(re.compile(r"/demands/\?type=e2e_gamma$"))  # same page, same filters
    expect(page.locator("#demand-rows .badge.status-new").first).to_have_text("新建")
    wait_live(page)
    expect(page.locator("#live-indicator")).to_have_text("已连接")
    artifacts.shoot(page, "j4-chinese")

    page.goto("/demands/")
    page.locator("#demand-rows tr[data-id] a").first.click()
    expect(page.locator("#demand-summary")).to_be_visible()
    expect(page.get_by_role("heading", name="分拣")).to_be_visible()
    artifacts.shoot(page, "j4-chinese-detail")

    page.locator(".lang-switch").get_by_role("button", name="English").click()
    expect(html).to_have_attribute("lang", "en")
    expect(page.get_by_role("heading", name="Triage")).to_be_visible()
    page.goto("/demands/")
    expect(page.locator("h1")).to_have_text("Demands")
    artifacts.shoot(page, "j4-english-again", full_page=False)


def test_a_live_row_arrives_in_the_readers_language(pages, feed):
    page = pages.open("polyglot", "/demands/")
    page.locator(".lang-switch").get_by_role("button", name="中文").click()
    try:
        wait_live(page)
        marker = f"zh-live-{uuid.uuid4().hex[:6]}"
        feed.send(content=f"需要导出为 Excel ({marker})", type="feature_request", source="e2e-live")
        feed.flush()
        row = page.locator("#demand-rows tr[data-id]").first
        expect(row).to_contain_text(marker)
        assert row.locator(".badge.status-new").inner_text() == "新建"
    finally:
        page.locator(".lang-switch").get_by_role("button", name="English").click()
