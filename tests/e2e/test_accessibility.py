"""A quick hand-made accessibility pass over every page, in light and dark mode: each form field
has a label, each button and link a name, ids are unique, and text (badges included) has at
least WCAG AA contrast against what is really behind it."""

import pytest
from playwright.sync_api import expect

# Names as a screen reader would compute them, simplified: aria-label, aria-labelledby, <label>, title.
FIND_UNNAMED = """() => {
  const problems = [];
  const labelledBy = el => (el.getAttribute("aria-labelledby") || "").split(/\\s+/)
    .map(id => (document.getElementById(id) || {}).textContent || "").join(" ").trim();
  const nameOf = el => (el.getAttribute("aria-label") || "").trim() || labelledBy(el)
    || Array.from(el.labels || []).map(label => label.textContent).join(" ").trim() || (el.getAttribute("title") || "").trim();
  const describe = el => el.outerHTML.slice(0, 100);
  for (const el of document.querySelectorAll("input:not([type=hidden]), select, textarea")) {
    if (!nameOf(el)) problems.push("field without a label: " + describe(el));
  }
  for (const el of document.querySelectorAll("button, a[href], [role=button], summary")) {
    if (!(el.textContent || "").trim() && !nameOf(el)) problems.push("control without a name: " + describe(el));
  }
  for (const el of document.querySelectorAll("img:not([alt]), svg:not([aria-hidden=true]):not([role=img])")) {
    problems.push("image neither described nor hidden: " + describe(el));
  }
  const seen = new Set();
  for (const el of document.querySelectorAll("[id]")) {
    if (seen.has(el.id)) problems.push("duplicate id: " + el.id);
    seen.add(el.id);
  }
  if (!document.documentElement.lang) problems.push("no lang on <html>");
  if (document.querySelectorAll("h1").length !== 1) problems.push("not exactly one h1");
  return problems;
}"""

# Contrast of each visible text element against its composited background (WCAG 2 formula).
FIND_LOW_CONTRAST = """(selector) => {
  const parse = value => {
    const m = value.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return null;
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
  };
  const over = (top, bottom) => ({
    r: top.r * top.a + bottom.r * (1 - top.a), g: top.g * top.a + bottom.g * (1 - top.a),
    b: top.b * top.a + bottom.b * (1 - top.a), a: 1,
  });
  const backdrop = el => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c.a > 0) { layers.push(c); if (c.a >= 1) break; }
    }
    const dark = matchMedia("(prefers-color-scheme: dark)").matches;
    let color = dark ? { r: 0, g: 0, b: 0, a: 1 } : { r: 255, g: 255, b: 255, a: 1 };
    for (const layer of layers.reverse()) color = over(layer, color);
    return color;
  };
  const luminance = c => {
    const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b);
  };
  const problems = [];
  for (const el of document.querySelectorAll(selector)) {
    if (!el.getClientRects().length || !(el.textContent || "").trim() || el.closest("[disabled], .disabled")) continue;
    const style = getComputedStyle(el);
    let opacity = 1;
    for (let e = el; e; e = e.parentElement) opacity *= Number(getComputedStyle(e).opacity);
    const background = backdrop(el);
    const text = over({ ...parse(style.color), a: parse(style.color).a * opacity }, background);
    const [light, darker] = [luminance(text), luminance(background)].sort((a, b) => b - a);
    const ratio = (light + 0.05) / (darker + 0.05);
    const large = parseFloat(style.fontSize) >= 24 || (parseFloat(style.fontSize) >= 18.66 && Number(style.fontWeight) >= 700);
    if (ratio < (large ? 3 : 4.5)) problems.push(`${ratio.toFixed(2)}:1 ${el.className || el.tagName} "${el.textContent.trim().slice(0, 30)}"`);
  }
  return problems;
}"""

TEXT = (
    ".badge, .tag, .muted, .live .label, td.time, table.data th, .nav a, nav.tabs a, button, .button, a, label, "
    "dt, .when, .count, .messages li, kbd, .notice, h1, h2, h3, p, td, dd"
)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_page_labels_its_controls_and_has_readable_text(pages, scheme, artifacts):
    page = pages.open("triager", "/demands/?type=e2e_beta&search=kiwi", color_scheme=scheme)
    page.get_by_label("Save these filters as").fill("a11y")  # a saved-view tab, with its delete button
    page.get_by_role("button", name="Save view").click()
    expect(page.locator("nav.tabs a", has_text="a11y")).to_be_visible()
    first = page.locator("#demand-rows tr[data-id]").first
    detail = first.get_attribute("data-href")
    problems = {}
    for path in ["/demands/", "/demands/?type=e2e_beta&search=kiwi", detail, "/notifications/", "/groups/", "/rejected/", "/rejected/1/", "/monitoring/", "/monitoring/alerts/", "/preferences/"]:
        page.goto(path)
        expect(page.locator("h1")).to_be_visible()
        found = page.evaluate(FIND_UNNAMED) + page.evaluate(FIND_LOW_CONTRAST, TEXT)
        if found:
            problems[path] = found
        if not path.startswith("/demands/"):  # the journeys show the demand pages
            artifacts.shoot(page, f"a11y-{path.strip('/').replace('/', '-')}-{scheme}")
    page.goto("/demands/")
    page.get_by_role("button", name="Shortcuts").click()
    found = page.evaluate(FIND_LOW_CONTRAST, "#shortcuts-help *")
    if found:
        problems["shortcuts help"] = found
    artifacts.shoot(page, f"a11y-shortcuts-{scheme}", full_page=False)

    anonymous = pages.open(None, "/login/", color_scheme=scheme)
    found = anonymous.evaluate(FIND_UNNAMED) + anonymous.evaluate(FIND_LOW_CONTRAST, TEXT)
    if found:
        problems["/login/"] = found
    artifacts.shoot(anonymous, f"a11y-login-{scheme}", full_page=False)
    assert not problems, "\n".join(f"{path}: {item}" for path, items in problems.items() for item in items)
