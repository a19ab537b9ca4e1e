"""The feedback widget in a real browser (Debian's Chromium driven by Playwright), on a page of
another origin, posting through CORS to the live endpoint. Skipped where no browser is installed."""

import json
import shutil
from urllib.parse import urlencode

import pytest
from django.db import connections

from demands.intake import keys

pytestmark = pytest.mark.django_db(transaction=True)

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture
def browser(monkeypatch):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip("no Chromium (apt-get install chromium)")
    # Playwright's sync API keeps an event loop in this thread; the ORM calls made by the test
    # itself (not by the server thread) are still plain synchronous calls.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
        # Inside Playwright's context Django has its own connection (connections are per
        # context): close it, or PostgreSQL refuses to drop the test database at the end.
        connections.close_all()


def shop_page(browser, live_server, settings, key: str, lang: str):
    """A customer's page at http://127.0.0.1:<port>/shop/: another origin than the endpoint's
    http://localhost:<port>, so the browser applies CORS as it would on a real site."""
    settings.ROOT_URLCONF = "tests.intake.shop_urls"
    port = live_server.url.rsplit(":", 1)[1]
    origin = f"http://127.0.0.1:{port}"
    page = browser.new_page()
    posts = []
    page.on("request", lambda request: request.method == "POST" and posts.append(json.loads(request.post_data)))
    page.goto(f"{origin}/shop/?" + urlencode({"endpoint": live_server.url, "key": key, "lang": lang}))
    return page, origin, posts


def test_widget_sends_feedback_as_a_user_feedback_demand_of_its_source(browser, live_server, settings, delivery):
    from playwright.sync_api import expect

    port = live_server.url.rsplit(":", 1)[1]
    _, key = keys.api_key_create(name="shop widget", source="web_app", allowed_origins=f"http://127.0.0.1:{port}")
    page, origin, _ = shop_page(browser, live_server, settings, key, "zh")
    page.get_by_role("button", name="反馈").click()
    page.get_by_label("您遇到了什么问题,或有什么建议?").fill("页面加载太慢,请优化。")
    page.get_by_label("联系方式(选填)").fill("li@example.com")
    page.get_by_role("button", name="提交").click()
    expect(page.get_by_role("status")).to_have_text("感谢您的反馈!我们已收到。")
    expect(page.get_by_label("您遇到了什么问题,或有什么建议?")).to_have_value("")

    [(topic, record_key, value, _headers)] = delivery.records
    demand = json.loads(value)
    assert (demand["type"], demand["source"], demand["content"]) == ("user_feedback", "web_app", "页面加载太慢,请优化。")
    assert demand["page"] == f"{origin}/shop/" and demand["contact"] == "li@example.com"
    assert record_key == f"web_app:{demand['id']}".encode()


def test_widget_shows_the_reason_and_a_retry_reuses_the_same_id(browser, live_server, settings, delivery):
    from playwright.sync_api import expect

    port = live_server.url.rsplit(":", 1)[1]
    _, key = keys.api_key_create(name="shop widget", source="web_app", allowed_origins=f"http://127.0.0.1:{port}")
    page, _, posts = shop_page(browser, live_server, settings, key, "en")
    page.get_by_role("button", name="Feedback").click()
    page.get_by_label("What went wrong, or what would you like?").fill("Checkout button does nothing")
    delivery.fail_with = "Local: Broker transport failure"
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("status")).to_contain_text("Could not send: the demands could not be handed to Kafka")
    delivery.fail_with = None
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("status")).to_have_text("Thank you! We received your feedback.")
    assert len(posts) == 2 and posts[0]["id"] == posts[1]["id"]
    assert len(delivery.records) == 1


def test_widget_on_a_page_whose_origin_the_key_does_not_allow_sends_nothing(browser, live_server, settings, delivery):
    from playwright.sync_api import expect

    _, key = keys.api_key_create(name="elsewhere", source="web_app", allowed_origins="https://shop.example.com")
    page, _, _ = shop_page(browser, live_server, settings, key, "en")
    page.get_by_role("button", name="Feedback").click()
    page.get_by_label("What went wrong, or what would you like?").fill("hello")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("status")).to_have_text("Network error — please try again.")  # the browser blocked it
    assert delivery.records == []
