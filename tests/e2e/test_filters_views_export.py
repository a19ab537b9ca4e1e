"""Journey 3: filter by status and type, search, save the filters as a view, export the filtered
rows as CSV, and bulk-assign several demands picked with checkboxes."""

import csv
import io
import re

from playwright.sync_api import expect

from .conftest import wait_live


def shown_ids(page) -> list[str]:
    return page.locator("#demand-rows tr[data-id]").evaluate_all("rows => rows.map(row => row.dataset.id)")


def test_filter_search_save_view_export_and_bulk_assign(pages, artifacts):
    page = pages.open("triager", "/demands/")
    rows = page.locator("#demand-rows tr[data-id]")
    filters = page.locator("form.filters")

    filters.get_by_label("Status").select_option("new")
    expect(page).to_have_url(re.compile(r"status=new"))
    filters.get_by_label("Type").select_option("e2e_beta")
    expect(page).to_have_url(re.compile(r"type=e2e_beta"))
    expect(rows).to_have_count(8)
    filters.get_by_role("searchbox").fill("kiwi")
    filters.get_by_role("searchbox").press("Enter")
    expect(page).to_have_url(re.compile(r"search=kiwi"))
    expect(rows).to_have_count(4)
    for text in rows.all_inner_texts():
        assert "e2e_beta" in text and "kiwi" in text
    filtered = shown_ids(page)
    # Filtering swapped the table with htmx; the tabs keep the filters, the CSV link exports them.
    expect(page.locator("nav.tabs a", has_text="Unassigned")).to_have_attribute("href", re.compile(r"search=kiwi.*assignee=none|assignee=none.*search=kiwi"))
    expect(page.get_by_role("link", name="Export CSV")).to_have_attribute("href", re.compile(r"search=kiwi"))
    wait_live(page)  # the swapped table opened its own socket, with the new filters
    artifacts.shoot(page, "j3-filtered")

    # Export: the download holds exactly the filtered rows.
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export CSV").click()
    download = download_info.value
    assert download.suggested_filename.endswith(".csv")
    text = open(download.path(), encoding="utf-8-sig").read()
    records = list(csv.DictReader(io.StringIO(text)))
    assert sorted(record["pk"] for record in records) == sorted(filtered)
    assert all(record["type"] == "e2e_beta" and "kiwi" in record["content"] for record in records)

    # Save the filters as a view: it becomes a tab that brings them back.
    page.get_by_label("Save these filters as").fill("Kiwi beta")
    page.get_by_role("button", name="Save view").click()
    tab = page.locator("nav.tabs a", has_text="Kiwi beta")
    expect(tab).to_be_visible()
    page.locator("form.filters").get_by_role("link", name="Clear").click()
    expect(page).not_to_have_url(re.compile(r"search=kiwi"))
    expect(rows.nth(8)).to_be_visible()
    tab.click()
    expect(page).to_have_url(re.compile(r"search=kiwi"))
    expect(tab).to_have_class(re.compile(r"\bactive\b"))
    expect(rows).to_have_count(4)
    assert sorted(shown_ids(page)) == sorted(filtered)
    artifacts.shoot(page, "j3-saved-view")

    # Bulk-assign three of them to one person.
    picked = filtered[:3]
    for pk in picked:
        page.locator(f"#demand-{pk} input[type=checkbox]").check()
    expect(page.locator("#demand-rows tr.is-selected")).to_have_count(3)
    bulk = page.locator("#bulk-form")
    bulk.get_by_label("Assignee").select_option(label="polyglot")
    artifacts.shoot(page, "j3-bulk-selected", full_page=False)
    bulk.get_by_role("button", name="Apply").click()
    expect(page.locator(".messages li.success")).to_contain_text("Changed 3 demand(s).")
    for pk in picked:
        expect(page.locator(f"#demand-{pk} td").nth(7)).to_have_text("polyglot")
    for pk in set(filtered) - set(picked):
        expect(page.locator(f"#demand-{pk} td").nth(7)).not_to_contain_text("polyglot")
    expect(rows).to_have_count(4)  # still the filtered list
    artifacts.shoot(page, "j3-bulk-done")
