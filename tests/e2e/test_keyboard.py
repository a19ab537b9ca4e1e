"""Journey 6: keyboard triage: j/k move the cursor row, o opens the demand, s opens its status
menu; ? opens the shortcuts help, which is also a visible button."""

import re

from playwright.sync_api import expect


def test_j_k_move_the_cursor_o_opens_and_s_opens_the_status_menu(pages, artifacts):
    page = pages.open("triager", "/demands/?type=e2e_gamma")
    rows = page.locator("#demand-rows tr[data-id]")
    cursor = page.locator("#demand-rows tr.is-cursor")
    expect(rows).to_have_count(8)
    page.locator("h1").click()  # keys go to the page, not to a field

    page.keyboard.press("j")
    expect(cursor).to_have_count(1)
    expect(rows.nth(0)).to_have_class(re.compile(r"\bis-cursor\b"))
    page.keyboard.press("j")
    page.keyboard.press("j")
    expect(rows.nth(2)).to_have_class(re.compile(r"\bis-cursor\b"))
    page.keyboard.press("k")
    expect(rows.nth(1)).to_have_class(re.compile(r"\bis-cursor\b"))
    expect(cursor).to_have_count(1)
    artifacts.shoot(page, "j6-cursor", full_page=False)

    # x selects the cursor row for the bulk bar, which says how many are selected.
    page.keyboard.press("x")
    expect(rows.nth(1).locator("input[type=checkbox]")).to_be_checked()
    expect(page.locator("[data-selection-count]")).to_have_text("1 selected:")
    page.keyboard.press("x")
    expect(rows.nth(1).locator("input[type=checkbox]")).not_to_be_checked()

    # / focuses search; Escape leaves it and the letters move the cursor again.
    page.keyboard.press("/")
    expect(page.get_by_role("searchbox")).to_be_focused()
    page.keyboard.press("Escape")
    page.keyboard.press("k")
    expect(rows.nth(0)).to_have_class(re.compile(r"\bis-cursor\b"))

    # ? opens the help (as does its button); Escape closes it.
    help_dialog = page.locator("#shortcuts-help")
    page.keyboard.press("?")
    expect(help_dialog).to_be_visible()
    expect(help_dialog).to_contain_text("Next / previous demand")
    artifacts.shoot(page, "j6-help", full_page=False)
    page.keyboard.press("Escape")
    expect(help_dialog).to_be_hidden()
    page.get_by_role("button", name="Shortcuts").click()
    expect(help_dialog).to_be_visible()
    help_dialog.get_by_role("button", name="Close").click()
    expect(help_dialog).to_be_hidden()

    href = rows.nth(0).get_attribute("data-href")
    page.keyboard.press("o")
    expect(page).to_have_url(re.compile(re.escape(href) + "$"))

    # s and a open the status and assignee menus (filtered by typing; test_one_step_triage.py
    # applies them); Escape closes them.
    page.locator("h1").click()
    page.keyboard.press("s")
    expect(page.get_by_role("listbox", name="Status")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.get_by_role("listbox", name="Status")).to_be_hidden()
    page.keyboard.press("a")
    expect(page.get_by_role("listbox", name="Assignee")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.get_by_role("listbox", name="Assignee")).to_be_hidden()
    page.keyboard.press("c")
    expect(page.locator("#comment-body")).to_be_focused()
    page.keyboard.type("typed, not shortcuts: jkos")  # letters in a field are text
    expect(page.locator("#comment-body")).to_have_value("typed, not shortcuts: jkos")
    expect(page).to_have_url(re.compile(re.escape(href) + "$"))
    artifacts.shoot(page, "j6-detail-focus", full_page=False)
