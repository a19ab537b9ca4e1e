"""Monitoring answers "is it healthy?": the verdict banner says Healthy while a consumer is live,
and a Chinese session's header stays Chinese after the monitor's live ticks."""

import re

from playwright.sync_api import expect

TICK_WAIT_MS = 40_000  # the monitor ticks every 10 s; its first lag sample may take a tick more

COUNT_TICKS = """() => { window.__ticks = 0;
  document.addEventListener("umsg:monitoring", (e) => { if (e.detail.kind === "tick") window.__ticks += 1; }); }"""


def test_the_banner_says_healthy_with_a_live_consumer_and_charts_carry_units(pages, artifacts):
    page = pages.open("triager", "/monitoring/")
    banner = page.locator("#monitor-verdict")
    expect(banner).to_have_attribute("data-verdict", "healthy", timeout=TICK_WAIT_MS)
    expect(banner.locator("h2")).to_have_text("Healthy")
    expect(page.locator("#monitor-summary [data-metric=verdict]")).to_have_text("Healthy")
    expect(page.locator("#consumers-card .badge.state-alive").first).to_have_text("alive")
    expect(page.locator('[data-now="lag"]')).to_contain_text("msgs")  # the current value, with its unit
    box = page.locator("#monitor-verdict").bounding_box()
    assert box["y"] < page.locator("#monitor-charts").bounding_box()["y"]  # the verdict comes first
    artifacts.shoot(page, "monitoring-verdict", full_page=False)


def test_a_chinese_header_stays_chinese_after_a_tick(pages, artifacts):
    page = pages.open("polyglot", "/monitoring/")
    page.locator(".lang-switch").get_by_role("button", name="中文").click()
    try:
        expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
        page.evaluate(COUNT_TICKS)
        page.wait_for_function("() => window.__ticks >= 1", timeout=TICK_WAIT_MS)
        header = page.locator("#monitor-summary")
        expect(header).to_contain_text("积压")
        assert not re.search(r"Backlog|Lag|consumers? dead|Healthy|Degraded|Down", header.inner_text())
        stats = page.locator("#monitor-stats").inner_text()
        assert "消费" in stats and "Consumer lag" not in stats
        artifacts.shoot(page, "monitoring-zh-after-tick", full_page=False)
    finally:
        page.locator(".lang-switch").get_by_role("button", name="English").click()
