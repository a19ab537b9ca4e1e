"""Browser journeys: the real dashboard in a subprocess, Debian's Chromium driven by Playwright.

One dashboard per session (`manage.py run_dashboard --no-demo` on a private SQLite file, topic
and consumer group), seeded through Kafka with the demands the journeys use. Playwright's sync
API is used directly (not the pytest-playwright plugin, which clashes with pytest-asyncio); `make
test` runs these in their own pytest invocation (`-m browser`). Screenshots at a desktop and a
phone width go to test-artifacts/e2e/, for passing and failing tests; the dashboard's log and
the measured live delays go there too.
"""

from __future__ import annotations

import os
import re
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from django.conf import settings

try:
    import playwright  # noqa: F401  (the `browser` extra: pip install -e '.[test,browser]')
except ImportError:  # without it, the rest of the suite still collects and runs
    collect_ignore_glob = ["test_*.py"]

from .dashboard import PASSWORD, REPO_ROOT, Dashboard, Feed

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]
DESKTOP = {"width": 1280, "height": 800}
MOBILE = {"width": 390, "height": 844}
ARTIFACTS = REPO_ROOT / "test-artifacts" / "e2e"
SEED_SOURCE = "e2e-seed"
EXPECT_TIMEOUT_MS = 10_000

CALL_REPORT = pytest.StashKey[pytest.TestReport]()


def pytest_collection_modifyitems(items):
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.stash[CALL_REPORT] = report
    return report


# -- artifacts ------------------------------------------------------------------------------------
class Artifacts:
    def __init__(self, root: Path):
        self.root = root
        self.log_path = root / "journeys.log"

    def note(self, line: str) -> None:
        """A line for humans (measured delays, counts); never asserted on."""
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(f"{datetime.now().isoformat(timespec='milliseconds')} {line}\n")

    def shoot(self, page, name: str, *, full_page: bool = True) -> None:
        """The page at 1280×800 and at 390×844 (a phone), then back to the page's own size."""
        size = page.viewport_size or DESKTOP
        try:
            for label, viewport in (("desktop", DESKTOP), ("mobile", MOBILE)):
                page.set_viewport_size(viewport)
                page.screenshot(path=self.root / f"{name}-{label}.png", full_page=full_page, animations="disabled")
        finally:
            page.set_viewport_size(size)


@pytest.fixture(scope="session")
def artifacts() -> Artifacts:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    return Artifacts(ARTIFACTS)


# -- the dashboard and its data ---------------------------------------------------------------
def seed_messages() -> list[dict]:
    """Demands every session starts with: three types, and a word ("kiwi") for search to find."""
    messages = []
    for i in range(8):
        messages.append({"type": "e2e_alpha", "content": f"Alpha {i}: 登录后页面空白 / blank page after login" + (" kiwi" if i in (1, 2) else "")})
        messages.append({"type": "e2e_beta", "content": f"Beta {i}: export button times out" + (" kiwi" if i < 4 else "")})
        messages.append({"type": "e2e_gamma", "content": f"Gamma {i}: API 返回 429 rate limited", "priority": "high" if i % 3 == 0 else "normal"})
    return messages


@pytest.fixture(scope="session")
def dashboard(artifacts, tmp_path_factory):
    server = Dashboard(
        workdir=tmp_path_factory.mktemp("dashboard"), log_path=artifacts.root / "dashboard.log", kafka_config=settings.KAFKA_CLIENT_CONFIG
    )
    try:
        server.feed.create_topics()
    except Exception as exc:
        pytest.fail(f"Kafka at {settings.KAFKA_CLIENT_CONFIG['bootstrap.servers']} is not usable ({exc}); start it with `make services`.")
    try:
        server.prepare()
        server.start()
        messages = seed_messages()
        for message in messages:
            server.feed.send(source=SEED_SOURCE, **message)
        server.feed.send_raw(b'{"id": "broken-1", "type": "user_feedback", "source": "e2e-seed"')  # cut short: rejected
        server.feed.flush()
        server.wait_until_stored(source=SEED_SOURCE, demands=len(messages), rejected=1)
        yield server
    finally:
        server.stop()
        server.feed.delete_topics(group=server.group)


@pytest.fixture(scope="session")
def feed(dashboard) -> Feed:
    """Produces demands to the dashboard's topic, as a source system would."""
    return dashboard.feed


# -- the browser --------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium package (as root).")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def sign_in(page, username: str, list_view: str | None = "all") -> None:
    """Sign in; then pick the list's view (kept in the session): "all" (every message) for the
    journeys that read demand rows — the seed repeats, so the default would be groups — or None
    to keep the product's default (tests/e2e/test_groups.py)."""
    page.goto("/login/")
    page.locator("#id_username").fill(username)
    page.locator("#id_password").fill(PASSWORD)
    page.locator(".login-box button[type=submit]").click()
    page.wait_for_url(re.compile(r"/demands/"))
    if list_view:
        page.goto(f"/demands/?view={list_view}")


class Pages:
    """Opens signed-in pages, each in its own browser context (its own cookies: its own user)."""

    def __init__(self, browser, dashboard, artifacts, name: str):
        self.browser, self.dashboard, self.artifacts, self.name = browser, dashboard, artifacts, name
        self.contexts = []
        self.errors: list[str] = []

    def open(self, username: str | None = "triager", path: str = "/demands/", list_view: str | None = "all", **context_options):
        context = self.browser.new_context(
            base_url=self.dashboard.url, viewport=DESKTOP, locale="en-US", accept_downloads=True, **context_options
        )
        context.set_default_timeout(EXPECT_TIMEOUT_MS)
        self.contexts.append(context)
        page = context.new_page()
        label = username or "anonymous"
        page.on("pageerror", lambda error: self.errors.append(f"{label}: {error}"))
        page.on("console", lambda message: message.type == "error" and self.artifacts.note(f"{self.name} console[{label}]: {message.text}"))
        if username:
            sign_in(page, username, list_view)
        if path:
            page.goto(path)
        return page

    def close(self, failed: bool) -> None:
        if failed:
            for index, context in enumerate(self.contexts):
                for number, page in enumerate(context.pages):
                    try:
                        self.artifacts.shoot(page, f"{self.name}-FAILED-{index}-{number}")
                    except Exception as exc:  # a crashed page: the report has the assertion
                        self.artifacts.note(f"{self.name}: no failure screenshot ({exc})")
        for context in self.contexts:
            context.close()


def open_pages(request, browser, dashboard, artifacts, *, log_lines: int = 15):
    """The body of a `pages` fixture for `dashboard`: on failure screenshots and the log's tail;
    JavaScript errors on any page fail the test. Fixtures `yield from` it."""
    dashboard.check_running()
    opened = Pages(browser, dashboard, artifacts, request.node.name)
    yield opened
    report = request.node.stash.get(CALL_REPORT, None)
    failed = report is None or report.failed
    opened.close(failed=failed)
    if failed:
        artifacts.note(f"{request.node.name} failed; dashboard log ends with:\n{dashboard.log_tail(log_lines)}")
    assert not opened.errors, f"JavaScript errors on the page: {opened.errors}"


@pytest.fixture
def pages(request, browser, dashboard, artifacts):
    yield from open_pages(request, browser, dashboard, artifacts)


def wait_live(page) -> None:
    """The list's websocket is open (the indicator says so)."""
    from playwright.sync_api import expect

    expect(page.locator("#live-indicator")).to_have_class(re.compile(r"\bconnected\b"))
