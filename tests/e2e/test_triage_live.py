"""Journey 2: a triager assigns a demand, changes its status and priority and comments; the assignee,
on the list in another browser, sees the row change and gets the notifications, all live."""

import re

from playwright.sync_api import expect

from .conftest import wait_live


def test_triage_on_the_detail_page_reaches_the_assignees_list_and_notifications_live(pages, artifacts):
    triager = pages.open("triager", "/demands/?type=e2e_alpha&search=Alpha+0")
    target = triager.locator("#demand-rows tr[data-id]")
    expect(target).to_have_count(1)
    pk = target.get_attribute("data-id")

    assignee = pages.open("assignee", "/demands/?type=e2e_alpha")
    wait_live(assignee)
    assignee.evaluate("window.__e2eSamePage = true")
    row = assignee.locator(f"#demand-{pk}")
    expect(row).to_be_visible()
    count = assignee.locator("#notification-count")
    unread_before = int(count.text_content() or 0)
    # The assignee's keyboard cursor rests on the row; live changes must not move it.
    assignee.locator("h1").click()
    position = assignee.locator("#demand-rows tr[data-id]").evaluate_all(f"rows => rows.findIndex(row => row.id === 'demand-{pk}')")
    for _ in range(position + 1):
        assignee.keyboard.press("j")
    expect(row).to_have_class(re.compile(r"\bis-cursor\b"))

    triager.goto(f"/demands/{pk}/")
    expect(triager.locator("h1")).to_have_text(f"Demand #{pk}")
    artifacts.shoot(triager, "j2-detail-before")

    # Assign: the assignee's row shows their name, a toast says so, the unread count goes up.
    # Each menu of the one triage form applies as soon as it changes (htmx, no page load).
    triager.evaluate("window.__e2eSamePage = true")
    triager.get_by_label("Assignee", exact=True).select_option(label="assignee")
    expect(triager.locator("#demand-summary dl.props")).to_contain_text("assignee")
    expect(row.locator("td").nth(7)).to_have_text("assignee")
    expect(row).to_have_class(re.compile(r"\bis-updated\b.*\bis-cursor\b|\bis-cursor\b.*\bis-updated\b"))
    toast = assignee.locator("#toasts .toast").filter(has_text=f"assigned demand #{pk} to you")
    expect(toast).to_be_visible()
    expect(count).to_be_visible()
    expect(count).to_have_text(str(unread_before + 1))
    artifacts.shoot(assignee, "j2-assignee-toast", full_page=False)

    # Status and priority: the row's badges change in place.
    triager.get_by_label("Status", exact=True).select_option("in_progress")
    expect(triager.locator("#demand-summary .badge.status-in_progress")).to_be_visible()
    expect(row.locator(".badge.status-in_progress")).to_have_text("In progress")

    triager.get_by_label("Priority", exact=True).select_option("urgent")
    expect(row.locator(".badge.priority-urgent")).to_be_visible()

    # A comment notifies the assignee too.
    triager.get_by_label("Comment", exact=True).fill("Reproduced on Chrome 126; 看起来是会话过期。")
    triager.get_by_role("button", name="Save").click()
    expect(triager.locator("#history")).to_contain_text("看起来是会话过期")
    expect(assignee.locator("#toasts .toast").filter(has_text=f"commented on demand #{pk}")).to_be_visible()
    expect(count).to_have_text(str(unread_before + 2))

    history = triager.locator("#history li")
    expect(history.filter(has_text="In progress")).to_have_count(1)
    expect(history.filter(has_text="Urgent")).to_have_count(1)
    assert assignee.evaluate("window.__e2eSamePage") is True, "the assignee's page reloaded"
    assert triager.evaluate("window.__e2eSamePage") is True, "the triager's page reloaded"
    artifacts.shoot(triager, "j2-detail-after")
    artifacts.shoot(assignee, "j2-assignee-list")
    triager.emulate_media(color_scheme="dark")
    artifacts.shoot(triager, "j2-detail-dark")

    # The notification list has both, newest first, and marking them read clears the count.
    assignee.locator("a.notifications").click()
    items = assignee.locator("ul.notification-list li.unread")
    expect(items.first).to_contain_text(f"commented on demand #{pk}")
    artifacts.shoot(assignee, "j2-notifications")
    assignee.get_by_role("button", name="Mark all as read").click()
    expect(items).to_have_count(0)
    expect(assignee.locator("#notification-count")).to_be_hidden()
    assert re.search(r"/notifications/$", assignee.url)
