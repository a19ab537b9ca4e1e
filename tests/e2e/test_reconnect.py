"""Journey 5: the dashboard process restarts (SIGTERM, then started again on the same port) while
demands keep arriving; the open page reconnects and shows every demand it missed, exactly once."""

import re
import threading
import time
import uuid
from collections import Counter

from playwright.sync_api import expect

from .conftest import wait_live

TOTAL = 30
GAP_SECONDS = 0.15  # the feed spans the whole restart: before, during and after


def test_page_reconnects_after_a_restart_and_shows_each_missed_demand_once(pages, dashboard, feed, artifacts):
    page = pages.open("triager", "/demands/?source=e2e-restart")
    wait_live(page)
    page.evaluate("window.__e2eSamePage = true")
    marker = f"rs-{uuid.uuid4().hex[:6]}"
    sent: list[int] = []
    restarted = threading.Event()

    def keep_producing():
        for n in range(TOTAL):
            if n == TOTAL // 2 and not restarted.wait(60):
                return  # the restart failed: the test reports that
            feed.send(content=f"Order sync lag {marker} #{n:02d}", type="log_exception", source="e2e-restart")
            feed.flush()
            sent.append(n)
            time.sleep(GAP_SECONDS)

    producer = threading.Thread(target=keep_producing, daemon=True)
    producer.start()
    rows = page.locator("#demand-rows tr[data-id]")
    expect(rows.first).to_be_visible()  # the first few arrived live before the restart

    started = time.monotonic()
    dashboard.stop()  # SIGTERM: the consume loop commits, daphne closes the sockets
    expect(page.locator("#live-indicator")).to_have_class(re.compile(r"\bdisconnected\b"))
    shown_during_outage = rows.count()
    artifacts.shoot(page, "j5-disconnected", full_page=False)
    dashboard.start()
    restarted.set()
    producer.join(timeout=60)
    assert sent == list(range(TOTAL)), "the feed did not finish"

    wait_live(page)
    expect(rows).to_have_count(TOTAL, timeout=30_000)
    artifacts.note(
        f"journey 5: {shown_during_outage} of {TOTAL} rows shown when the server stopped; all {TOTAL} shown "
        f"{time.monotonic() - started:.1f} s after the stop"
    )
    texts = rows.all_inner_texts()
    numbers = Counter(int(match.group(1)) for text in texts for match in [re.search(rf"{marker} #(\d+)", text)] if match)
    assert sorted(numbers) == list(range(TOTAL)), "missing demands"
    assert all(count == 1 for count in numbers.values()), f"duplicated demands: {numbers}"
    ids = rows.evaluate_all("rows => rows.map(row => Number(row.dataset.id))")
    assert len(set(ids)) == TOTAL and ids == sorted(ids, reverse=True), "rows are not unique and newest first"
    assert page.evaluate("window.__e2eSamePage") is True, "the page reloaded"
    artifacts.shoot(page, "j5-caught-up")
