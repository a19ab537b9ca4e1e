"""Journey 1: sign in; the list shows demands; a demand produced to Kafka appears at the top live."""

import re
import time
import uuid
from urllib.parse import urlparse

from playwright.sync_api import expect

from .conftest import wait_live

# Records (in the page's clock, which is this machine's) when a row containing `marker` appears.
WATCH_FOR_ROW = """marker => {
  window.__e2eArrivedAt = null;
  const body = document.getElementById("demand-rows");
  new MutationObserver((_, observer) => {
    if (body.textContent.includes(marker)) { window.__e2eArrivedAt = Date.now(); observer.disconnect(); }
  }).observe(body, { childList: true, subtree: true });
}"""


def test_signed_in_staff_see_the_list_and_a_new_kafka_demand_arrives_on_top_without_reload(pages, feed, artifacts):
    page = pages.open(path=None)  # signing in lands on the list
    rows = page.locator("#demand-rows tr[data-id]")
    expect(page.locator("h1")).to_have_text("Demands")
    expect(rows.nth(23)).to_be_visible()  # the 24 seeded demands (at least)
    wait_live(page)
    artifacts.shoot(page, "j1-list")

    marker = f"live-{uuid.uuid4().hex[:8]}"
    page.evaluate("window.__e2eSamePage = true")
    page.evaluate(WATCH_FOR_ROW, marker)
    sent_at_ms = time.time() * 1000
    feed.send(content=f"Checkout fails with 502 ({marker})", type="api_anomaly", source="e2e-live", priority="urgent")
    feed.flush()

    expect(rows.first).to_contain_text(marker)
    delay_ms = page.evaluate("window.__e2eArrivedAt") - sent_at_ms
    artifacts.note(f"journey 1: demand produced → row shown in {delay_ms:.0f} ms")
    assert page.evaluate("window.__e2eSamePage") is True, "the page reloaded"

    first = rows.first
    expect(first).to_have_class(re.compile(r"\bis-new\b"))
    expect(first.locator(".badge.priority-urgent")).to_have_text(re.compile("urgent", re.I))
    expect(first.locator(".badge.status-new")).to_have_text("New")
    when = first.locator("time[data-relative]")
    expect(when).to_have_attribute("title", re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}"))
    expect(when).to_have_text(re.compile(r"now|second", re.I))  # relative; the exact time is on hover
    assert len(set(rows.evaluate_all("rows => rows.map(row => row.dataset.id)"))) == rows.count()
    artifacts.shoot(page, "j1-live-row")

    page.emulate_media(color_scheme="dark")
    artifacts.shoot(page, "j1-list-dark")


def _open_sockets(sockets) -> list[str]:
    return [urlparse(ws.url).path for ws in sockets if not ws.is_closed()]


def test_the_list_and_the_monitoring_page_each_open_exactly_one_websocket(pages):
    page = pages.open(path=None)  # signed in, on the list
    wait_live(page)  # the landing page's socket is open: those counted below are the next pages'
    sockets, closed_early = [], []
    page.on("websocket", lambda ws: sockets.append(ws))
    page.on("console", lambda message: "closed before the connection is established" in message.text and closed_early.append(message.text))

    page.goto("/demands/")
    wait_live(page)
    expect(page.locator("#monitor-summary .msum")).to_be_visible()  # the header summary rides the same socket
    assert [urlparse(ws.url).path for ws in sockets] == ["/ws/demands/"]

    sockets.clear()
    page.goto("/monitoring/")
    expect(page.locator("#monitor-live")).to_have_class(re.compile(r"\bconnected\b"))
    assert [urlparse(ws.url).path for ws in sockets] == ["/ws/monitoring/"]

    # Quick filter changes: the socket follows the last one, and none is closed while connecting.
    # (Playwright does not see sockets close when the page is left: count this page's alone.)
    del sockets[:]
    page.goto("/demands/")
    wait_live(page)
    filters = page.locator("form.filters")
    for value in ("e2e_alpha", "e2e_beta", "e2e_gamma"):
        filters.get_by_label("Type").select_option(value)
    expect(page).to_have_url(re.compile(r"type=e2e_gamma"))
    wait_live(page)
    for _ in range(50):  # retired sockets close as soon as they have opened
        if len(_open_sockets(sockets)) == 1:
            break
        page.wait_for_timeout(100)
    assert _open_sockets(sockets) == ["/ws/demands/"]
    assert "type=e2e_gamma" in sockets[-1].url
    assert closed_early == []
