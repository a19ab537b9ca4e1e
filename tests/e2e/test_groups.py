"""Journey: groups as the unit of triage. The list opens grouped (the seed repeats), two groups of
one problem from two sources are merged, the group is resolved, and a new arrival reopens it with
the regression note."""

import re
import time

from playwright.sync_api import expect

CONTENT = "Groups journey: 结账按钮无响应 / checkout button does nothing"


def reload_until(page, locator, count: int, timeout: float = 15.0) -> None:
    """The grouped list is not live: reload until the consumer has stored what was sent."""
    deadline = time.monotonic() + timeout
    while locator.count() != count and time.monotonic() < deadline:
        page.wait_for_timeout(300)
        page.reload()
    expect(locator).to_have_count(count)


def test_grouped_list_merge_resolve_and_regression(pages, feed, artifacts):
    for n, source in enumerate(["e2e-web", "e2e-web", "e2e-ios"]):
        feed.send(type="e2e_groups", source=source, content=f"{CONTENT} #{n}")
    feed.flush()
    page = pages.open("triager", "/demands/?type=e2e_groups", list_view=None)  # the product's default view
    rows = page.locator("#group-rows tr")
    reload_until(page, rows, 2)
    expect(page.locator("#view-toggle a[aria-current=page]")).to_have_text("Groups")
    expect(page.locator("#result-count")).to_have_text("2 groups")
    expect(page.locator("#view-toggle a", has_text="Every message")).to_have_attribute("href", re.compile(r"type=e2e_groups"))

    # Merge: the one problem from two sources becomes one group of three.
    for box in page.locator("#group-rows input[type=checkbox]").all():
        box.check()
    page.get_by_role("button", name="Merge").click()
    expect(rows).to_have_count(1)
    expect(rows.first.locator(".count-cell")).to_have_text("3")
    artifacts.shoot(page, "groups-merged")

    # Resolve the group on its page: its open demands are resolved with it.
    rows.first.locator("td.content a").first.click()
    expect(page).to_have_url(re.compile(r"/groups/\d+/$"))
    expect(page.locator("#merged-groups")).to_contain_text("e2e-ios")
    page.get_by_label("Status").select_option("resolved")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("#group-status")).to_have_text("Resolved")

    # A new arrival from the merged source lands in this group and reopens it: a regression.
    feed.send(type="e2e_groups", source="e2e-ios", content=f"{CONTENT} #9")
    feed.flush()
    note = page.locator(".regression-note")
    reload_until(page, note, 1)
    expect(note).to_contain_text("Regression: reopened by a new demand on")
    expect(page.locator("#group-status")).to_have_text("Triaged")
    expect(page.locator("#group-summary")).to_contain_text("4 demands")
    artifacts.shoot(page, "groups-regression")
