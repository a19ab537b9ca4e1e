"""Journey: one demand fully triaged from the keyboard — status, priority, assignee and a comment —
in at most 8 keys plus the comment's text, with no page load (htmx swaps; a window marker
survives and the main frame never navigates); the assignee menu filtered by a name; the command
palette; a list row triaged from its cursor; and Enter on the bulk Apply button posts without
also opening the row (no GET of the demand after the POST)."""

import re

from playwright.sync_api import expect

SOURCE = "e2e-onestep"
MAX_KEYS = 8


def test_one_demand_is_triaged_in_eight_keys_without_a_page_load(pages, feed, dashboard, artifacts):
    for n in range(3):
        feed.send(type="e2e_onestep", source=SOURCE, content=f"One step {n}: checkout button does nothing")
    feed.flush()
    dashboard.wait_until_stored(source=SOURCE, demands=3)

    page = pages.open("triager", "/demands/?type=e2e_onestep")
    rows = page.locator("#demand-rows tr[data-id]")
    expect(rows).to_have_count(3)
    pk = rows.nth(2).get_attribute("data-id")
    page.goto(f"/demands/{pk}/")
    expect(page.locator("h1")).to_have_text(f"Demand #{pk}")

    navigations = []
    page.on("framenavigated", lambda frame: frame == page.main_frame and navigations.append(frame.url))
    page.evaluate("window.__oneStep = true")
    keys = []

    def press(key):
        keys.append(key)
        page.keyboard.press(key)

    summary = page.locator("#demand-summary")
    toasts = page.locator("#toasts .toast")
    page.locator("h1").click()  # keys go to the page

    # s opens the status menu; typing filters it; Enter applies the highlighted choice.
    press("s")
    listbox = page.get_by_role("listbox", name="Status")
    expect(listbox).to_be_visible()
    filter_box = page.locator(".triage-menu [role=combobox]")
    expect(filter_box).to_be_focused()
    press("i")
    highlighted = listbox.locator("[role=option][aria-selected=true]")
    expect(highlighted).to_have_text(re.compile("In progress"))
    assert filter_box.get_attribute("aria-activedescendant") == highlighted.get_attribute("id")
    artifacts.shoot(page, "one-step-status-menu", full_page=False)
    press("Enter")
    expect(listbox).to_be_hidden()
    expect(summary.locator(".badge.status-in_progress")).to_be_visible()
    expect(toasts.filter(has_text="Status → In progress")).to_be_visible()

    # p, then the number of the line: Urgent.
    press("p")
    expect(page.get_by_role("listbox", name="Priority")).to_be_visible()
    press("1")
    expect(summary.locator(".badge.priority-urgent")).to_be_visible()
    expect(toasts.filter(has_text="Priority → Urgent")).to_be_visible()

    # i assigns to me.
    press("i")
    expect(summary.locator("dl.props")).to_contain_text("triager")

    # c, the text, Ctrl+Enter.
    press("c")
    expect(page.locator("#comment-body")).to_be_focused()
    page.keyboard.type("Checked: the click handler throws on Safari; 已复现。")
    press("Control+Enter")
    history = page.locator("#history")
    # Typed at once after c, while the assignment's answer may still be on its way: nothing is lost.
    expect(history).to_contain_text("Checked: the click handler throws on Safari; 已复现。")
    expect(toasts.filter(has_text="Comment added")).to_be_visible()
    expect(page.locator("#comment-body")).to_have_value("")

    assert len(keys) <= MAX_KEYS, keys
    expect(history.locator("li.event-status")).to_have_count(1)
    expect(history.locator("li.event-priority")).to_have_count(1)
    expect(history.locator("li.event-assignment")).to_have_count(1)
    assert navigations == [], navigations
    assert page.evaluate("window.__oneStep") is True, "the page reloaded"
    artifacts.shoot(page, "one-step-done")

    # A draft comment is not sent by a menu's change, and stays in its box.
    expect(page.locator("#comment-body")).to_be_focused()  # after sending, the box keeps the focus
    page.keyboard.press("Escape")
    page.keyboard.press("c")
    page.keyboard.type("draft, not yet")
    page.keyboard.press("Escape")
    page.keyboard.press("p")
    page.keyboard.press("2")
    expect(summary.locator(".badge.priority-high")).to_be_visible()
    expect(page.locator("#comment-body")).to_have_value("draft, not yet")
    expect(history).not_to_contain_text("draft, not yet")
    page.locator("#comment-body").fill("")

    # a: the assignee menu, filtered by a name.
    page.locator("h1").click()
    page.keyboard.press("a")
    assignees = page.get_by_role("listbox", name="Assignee")
    expect(assignees).to_be_visible()
    page.keyboard.type("assig")
    expect(assignees.locator("[role=option]")).to_have_count(1)
    page.keyboard.press("Enter")
    expect(summary.locator("dl.props")).to_contain_text("assignee")
    # Esc closes a menu without a change.
    page.keyboard.press("p")
    expect(page.get_by_role("listbox", name="Priority")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.get_by_role("listbox", name="Priority")).to_be_hidden()

    # The command palette: the same actions, filtered by typing.
    page.keyboard.press("Control+k")
    palette = page.get_by_role("listbox", name="Command palette")
    expect(palette).to_be_visible()
    page.keyboard.type("resol")
    expect(palette.locator("[role=option][aria-selected=true]")).to_have_text(re.compile("Resolve"))
    artifacts.shoot(page, "one-step-palette", full_page=False)
    page.keyboard.press("Enter")
    expect(summary.locator(".badge.status-resolved")).to_be_visible()
    expect(toasts.filter(has_text="Status → Resolved")).to_be_visible()  # the panel is back (the live frame may come first)

    # The form's own menu from the keyboard: an arrow only moves it, Enter applies.
    status_menu = page.locator("#status-select")
    status_menu.focus()
    page.keyboard.press("ArrowDown")
    expect(status_menu).to_have_value("triaged")
    expect(summary.locator(".badge.status-resolved")).to_be_visible()
    page.keyboard.press("Enter")
    expect(summary.locator(".badge.status-triaged")).to_be_visible()
    assert navigations == [] and page.evaluate("window.__oneStep") is True

    # On the list: s on the cursor row, applied without a page load; the row changes live.
    page.goto("/demands/?type=e2e_onestep")
    expect(rows).to_have_count(3)
    page.evaluate("window.__oneStep = true")
    page.locator("h1").click()
    page.keyboard.press("j")
    first = rows.nth(0)
    expect(first).to_have_class(re.compile(r"\bis-cursor\b"))
    page.keyboard.press("s")
    page.keyboard.type("tri")
    page.keyboard.press("Enter")
    expect(toasts.filter(has_text="Status → Triaged")).to_be_visible()
    expect(first.locator(".badge.status-triaged")).to_be_visible()
    assert page.evaluate("window.__oneStep") is True


def test_enter_on_the_bulk_apply_button_posts_and_does_not_open_the_row(pages, feed, dashboard):
    feed.send(type="e2e_onestep_bulk", source=f"{SOURCE}-bulk", content="Bulk: Enter must not open me")
    feed.flush()
    dashboard.wait_until_stored(source=f"{SOURCE}-bulk", demands=1)
    page = pages.open("triager", "/demands/?type=e2e_onestep_bulk")
    row = page.locator("#demand-rows tr[data-id]")
    expect(row).to_have_count(1)
    href = row.get_attribute("data-href")
    page.locator("h1").click()
    page.keyboard.press("j")
    page.keyboard.press("x")
    page.locator("#bulk-form select[name=priority]").select_option("low")
    requests = []
    page.on("request", lambda request: request.is_navigation_request() and requests.append((request.method, request.url)))
    page.locator("#bulk-form button[type=submit]").focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page.locator(".messages")).to_contain_text("Changed 1 demand(s).")
    expect(row.locator(".badge.priority-low")).to_be_visible()
    posts = [url for method, url in requests if method == "POST"]
    assert len(posts) == 1 and posts[0].endswith("/demands/bulk/"), requests
    assert not [url for method, url in requests if method == "GET" and url.endswith(href)], requests
