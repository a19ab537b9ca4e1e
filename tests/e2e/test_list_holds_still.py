"""Journey: a live list that holds still under the reader, grouped toasts, no console errors on
quick filters, and the phone's first screen (a short header, the first demand in view)."""

import re
import threading
import uuid

from playwright.sync_api import expect

from .conftest import MOBILE, wait_live

ROW_AT = """([x, y]) => {
  const row = document.elementFromPoint(x, y)?.closest("tr[data-id]");
  return row ? [row.id, Math.round(row.getBoundingClientRect().top)] : null;
}"""


def _send(feed, marker: str, n: int, **extra) -> None:
    for i in range(n):
        feed.send(content=f"{marker} #{i}", source="e2e-hold", **extra)
    feed.flush()


def test_new_rows_wait_behind_a_pill_while_the_pointer_or_the_cursor_is_on_the_list(pages, feed, artifacts):
    page = pages.open()
    wait_live(page)
    rows = page.locator("#demand-rows tr[data-id]")
    pill = page.locator("#new-rows-pill")

    # The pointer rests on the third row: five arrivals wait, and the row under it stays put.
    box = rows.nth(2).bounding_box()
    point = [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2]
    page.mouse.move(*point)
    under = page.evaluate(ROW_AT, point)
    marker = f"hold-{uuid.uuid4().hex[:6]}"
    _send(feed, marker, 5)
    expect(pill).to_have_text("5 new — show")
    assert page.evaluate(ROW_AT, point) == under
    assert marker not in rows.first.inner_text()
    artifacts.shoot(page, "hold-pill", full_page=False)
    page.keyboard.press(".")  # shows them
    expect(rows.first).to_contain_text(marker)
    expect(pill).to_be_hidden()

    # A keyboard cursor (pointer away from the table) holds rows too; the pill shows them.
    page.mouse.move(5, 5)
    page.keyboard.press("j")
    cursor = page.locator("#demand-rows tr.is-cursor")
    expect(cursor).to_have_attribute("aria-current", "true")
    cursor_id = cursor.get_attribute("id")
    # The cursor is drawn unlike a new row's flash: a focus-coloured frame and a tint.
    assert cursor.locator("td").first.evaluate("td => getComputedStyle(td).boxShadow").count("inset") >= 2
    marker = f"hold-{uuid.uuid4().hex[:6]}"
    _send(feed, marker, 2)
    expect(pill).to_have_text("2 new — show")
    assert rows.first.get_attribute("id") == cursor_id
    pill.click()
    expect(rows.first).to_contain_text(marker)
    expect(page.locator(f"#{cursor_id}")).to_have_class(re.compile(r"\bis-cursor\b"))


def test_a_selected_row_survives_a_burst_past_the_live_cap(pages, feed):
    page = pages.open()
    wait_live(page)
    page.mouse.move(5, 5)
    rows = page.locator("#demand-rows tr[data-id]")
    shown = rows.count()
    page.evaluate(f"document.getElementById('demand-table').dataset.liveMaxRows = '{shown}'")  # the cap, reached
    last = rows.nth(shown - 1)
    last_id = last.get_attribute("id")
    last.locator("input[type=checkbox]").check()
    page.mouse.move(5, 5)
    marker = f"burst-{uuid.uuid4().hex[:6]}"
    _send(feed, marker, 8)
    expect(page.locator("#new-rows-pill")).to_have_text("8 new — show")
    page.locator("#new-rows-pill").click()
    expect(rows.first).to_contain_text(marker)
    expect(page.locator(f"#{last_id} input[type=checkbox]")).to_be_checked()
    expect(page.locator("[data-selection-count]")).to_have_text("1 selected:")
    assert rows.count() == shown + 1  # the cap, plus the selected row it may not cut


def test_a_rule_routing_four_demands_shows_one_grouped_toast(pages, feed, dashboard):
    tag = uuid.uuid4().hex[:6]
    dashboard.manage("shell", "-c", (
        "from django.contrib.auth.models import User; from demands.models import Rule, Team\n"
        f"team = Team.objects.create(name='Payments-{tag}'); team.members.add(User.objects.get(username='triager'))\n"
        f"Rule.objects.create(name='route-{tag}', match_keywords='route-{tag}', assign_team=team)\n"
    ))
    page = pages.open()
    wait_live(page)
    page.wait_for_timeout(5500)  # the consumer re-reads rules written by another process every 5 s
    _send(feed, f"route-{tag}", 4)
    toast = page.locator("#toasts .toast")
    expect(toast.locator(".toast-title")).to_have_text(f"4 demands routed to Payments-{tag}")
    expect(toast).to_have_count(1)


def test_quick_filters_log_no_console_errors_while_demands_arrive(pages, feed):
    page = pages.open()
    problems = []
    page.on("console", lambda m: m.type in ("error", "warning") and problems.append(m.text))
    page.on("pageerror", lambda e: problems.append(str(e)))
    wait_live(page)
    stop = threading.Event()

    def traffic():
        i = 0
        while not stop.wait(0.25):
            feed.send(content=f"background {i}", source="e2e-traffic")
            feed.flush()
            i += 1

    sender = threading.Thread(target=traffic, daemon=True)
    sender.start()
    try:
        tabs = page.locator("#view-tabs")
        for name in ("Assigned to me", "Unassigned", "My teams", "All"):
            # (Playwright's own wait for the navigation hung once in a while here; the page had loaded.)
            tabs.get_by_role("link", name=name).click(no_wait_after=True)
            expect(tabs.get_by_role("link", name=name)).to_have_attribute("aria-current", "page")
        filters = page.locator("form.filters")
        for value in ("e2e_alpha", "e2e_beta", ""):
            filters.get_by_label("Type").select_option(value)
        filters.get_by_label("Status").select_option("new")
        expect(page.locator(".chip[data-filter=status]")).to_be_visible()
        page.locator(".chip[data-filter=status]").click()
        expect(page.locator(".chip")).to_have_count(0)
        page.go_back()
        page.go_forward()
        wait_live(page)
        page.wait_for_timeout(500)
    finally:
        stop.set()
        sender.join(5)
    assert problems == []


def test_on_a_phone_the_header_is_short_and_the_first_demand_is_on_the_first_screen(pages, artifacts):
    page = pages.open("polyglot", "/demands/?status=new&type=e2e_alpha")
    page.locator(".lang-switch button[value=zh-hans]").click()
    try:
        _phone_first_screen(page, artifacts)
    finally:
        page.set_viewport_size({"width": 1280, "height": 800})
        page.locator(".lang-switch button[value=en]").click()


def _phone_first_screen(page, artifacts):
    page.set_viewport_size(MOBILE)
    page.reload()
    header = page.locator(".topbar").bounding_box()
    assert header["height"] <= 0.12 * MOBILE["height"]
    first = page.locator("#demand-rows tr[data-id]").first
    expect(first).to_be_visible()
    assert first.bounding_box()["y"] + 40 <= MOBILE["height"]
    artifacts.shoot(page, "phone-first-screen", full_page=False)

    # The menu opens the nav, no link cut; the filters are a sheet behind "筛选 (2)".
    menu = page.locator(".menu-button")
    assert menu.bounding_box()["height"] >= 44
    menu.click()
    nav = page.locator(".topbar .nav")
    expect(nav).to_be_visible()
    assert nav.evaluate("n => [...n.querySelectorAll('a')].every(a => a.scrollWidth <= a.clientWidth + 1)")
    menu.click()
    form = page.locator("form.filters")
    expect(form).to_be_hidden()
    button = page.locator(".filters-button")
    expect(button).to_have_text("筛选（2）")
    assert button.bounding_box()["height"] >= 44
    button.click()
    expect(form).to_be_visible()
    search = form.locator("label:has(input[type=search])")
    line = search.evaluate("l => parseFloat(getComputedStyle(l).lineHeight) || 20")
    text_height = search.evaluate("l => { const r = document.createRange(); r.selectNodeContents(l.firstChild); return r.getBoundingClientRect().height; }")
    assert text_height < 1.8 * line  # 搜索 on one line
    artifacts.shoot(page, "phone-filters-sheet", full_page=False)
    form.get_by_role("button", name="完成").click()
    expect(form).to_be_hidden()


def test_the_top_bar_wraps_instead_of_cutting_the_nav_at_desktop_width(pages):
    page = pages.open()
    page.set_viewport_size({"width": 1440, "height": 900})
    expect(page.locator("#monitor-summary .msum")).to_be_visible()
    page.evaluate("""() => { const m = document.querySelector('#monitor-summary .msum');
      for (let i = 0; i < 12; i++) m.insertAdjacentHTML('beforeend', '<span class="item">Lag 57 · stalled</span>'); }""")
    for link in page.locator(".topbar .nav a, .topbar .user a").all():
        assert link.evaluate("a => a.scrollWidth <= a.clientWidth + 1 && a.getBoundingClientRect().right <= innerWidth")
    head = page.locator("table.data thead th").first.bounding_box()
    assert head["y"] >= page.locator(".topbar").bounding_box()["height"] - 1  # the table's header stays below the bar
