"""Journey: a full first page shows its rows at once and its capped count a moment later (the
page asks /demands/count/ after loading, htmx on load), and filtering keeps doing so."""

import time

from playwright.sync_api import expect

TYPE = "e2e_count"


def test_a_full_page_fetches_its_count_after_loading(pages, feed):
    for n in range(57):
        feed.send(type=TYPE, source="e2e-count", content=f"Count journey: 第 {n} 条 distinct words {n * 7919}")
    feed.flush()
    page = pages.open("triager", f"/demands/?type={TYPE}")
    rows = page.locator("#demand-rows tr")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # until the consumer stored them all
        page.reload()
        expect(rows).to_have_count(50)
        if page.locator("#result-count").inner_text().strip() == "57 demands":
            break
        page.wait_for_timeout(300)
    expect(page.locator("#result-count")).to_have_text("57 demands")
    expect(page.locator("#result-count")).not_to_have_attribute("hx-get", "/demands/count/?type=e2e_count&view=all")
    # Filtering with htmx swaps the table in: the new count is fetched again.
    page.get_by_label("Search", exact=False).first.fill("第 1")
    page.get_by_label("Search", exact=False).first.press("Enter")
    expect(page.locator("#result-count")).to_have_text("11 demands")  # 第 1, 第 10–19
