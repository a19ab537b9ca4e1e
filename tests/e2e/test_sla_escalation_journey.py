"""Journey (issue 17): an SLA policy set in the product, an urgent demand from Kafka, the timer
counting down on the list, the escalation step firing, a local chat receiver getting the card,
and its claim link assigning the demand.

A dashboard of its own (module scope), since it needs settings the shared one does not have: a
1-second monitor tick, loopback chat targets allowed (WEBHOOK_ALLOWED_HOSTS) and absolute links
(PUBLIC_BASE_URL). The smallest target a policy takes is one minute, so this journey waits about
a minute for the escalation: every wait polls a condition with a deadline.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.conf import settings
from playwright.sync_api import expect

from .conftest import open_pages
from .dashboard import Dashboard, free_port

TEAM = "Night shift"
TYPE = "e2e_sla"


class Receiver:
    """A chat robot stand-in on a local port: records every POST body, answers like Feishu."""

    def __init__(self):
        self.bodies: list[dict] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    received.append(json.loads(self.rfile.read(length) or b"{}"))
                except ValueError:
                    received.append({"unparsed": True})
                answer = b'{"code": 0, "msg": "success"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/open-apis/bot/v2/hook/e2e"
        self.thread = threading.Thread(target=self.server.serve_forever, name="chat-receiver", daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


SETUP_SCRIPT = """
from django.contrib.auth.models import User
from demands.models import OutboundChannel, Subscription, Team
team = Team.objects.create(name={team!r})
team.members.add(User.objects.get(username="polyglot"))
channel = OutboundChannel.objects.create(name="Night shift bot", kind="feishu", target={url!r}, team=team)
Subscription.objects.create(team=team, kind="escalation", channel=channel)
"""


@pytest.fixture(scope="module")
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture(scope="module")
def sla_dashboard(artifacts, tmp_path_factory, receiver):
    server = Dashboard(
        workdir=tmp_path_factory.mktemp("sla-dashboard"), log_path=artifacts.root / "sla-dashboard.log",
        kafka_config=settings.KAFKA_CLIENT_CONFIG,
    )
    server.env.update({
        "MONITORING_TICK_SECONDS": "1",
        "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "PUBLIC_BASE_URL": server.url,
        "MONITORING_BASE_URL": server.url,
    })
    try:
        server.feed.create_topics()
        server.prepare()
        server.manage("shell", "-c", SETUP_SCRIPT.format(team=TEAM, url=receiver.url))
        server.start()
        yield server
    finally:
        server.stop()
        server.feed.delete_topics(group=server.group)


@pytest.fixture
def sla_pages(request, browser, sla_dashboard, artifacts):
    yield from open_pages(request, browser, sla_dashboard, artifacts, log_lines=25)


def wait_for(condition, *, timeout: float, what: str, dashboard: Dashboard):
    """Poll `condition()` until it returns something truthy; fail with the dashboard's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"{what}: not within {timeout:.0f}s\n{dashboard.log_tail(20)}")


def set_policy(page) -> None:
    """An urgent policy: first response within 1 minute; after 1 minute unacknowledged, notify
    and reassign to the night shift."""
    page.goto("/sla/new/")
    page.locator("#id_name").fill("Urgent first response")
    expect(page.locator("input[name=priorities][value=urgent]")).to_be_checked()  # the form's default
    page.locator("#id_match_types").fill(TYPE)
    page.locator("#id_respond_minutes").fill("1")
    page.locator("#id_steps-0-after_minutes").fill("1")
    page.locator("#id_steps-0-condition").select_option("not_acknowledged")
    page.locator("#id_steps-0-notify_team").select_option(label=TEAM)
    page.locator("#id_steps-0-assign_team").select_option(label=TEAM)
    page.get_by_role("button", name="Save").click()
    page.wait_for_url(re.compile(r"/sla/$"))
    expect(page.locator("main")).to_contain_text("Urgent first response")


def test_policy_escalates_to_a_chat_card_whose_claim_link_assigns(sla_pages, sla_dashboard, receiver, artifacts):
    started = time.monotonic()
    admin = sla_pages.open("triager", path=None)
    set_policy(admin)

    # The urgent demand arrives through Kafka, as a source system sends it.
    words = f"Checkout down for every user {uuid.uuid4().hex[:8]}"
    source = f"e2e-sla-{uuid.uuid4().hex[:6]}"
    sla_dashboard.feed.send(content=words, type=TYPE, source=source, priority="urgent")
    sla_dashboard.feed.flush()
    sla_dashboard.wait_until_stored(source=source, demands=1)

    # The list shows its timer, counting down.
    admin.goto(f"/demands/?view=all&source={source}")
    row = admin.locator("#demand-rows tr[data-id]", has_text=words)
    expect(row).to_have_count(1)
    pk = int(row.get_attribute("data-id"))
    badge = row.locator(".sla-cell .sla")
    expect(badge).to_contain_text(re.compile(r"due\b.*\bin\b"))
    first = badge.inner_text()
    expect(badge).not_to_have_text(first, timeout=20_000)  # relative times refresh every 15 s
    artifacts.note(f"sla journey: badge went from {first!r} to {badge.inner_text()!r}")

    # About a minute after arrival the step fires: the receiver gets the card.
    def card():
        for body in receiver.bodies:
            if f"#{pk}" in json.dumps(body, ensure_ascii=False):
                return body
        return None

    body = wait_for(card, timeout=100, what="the escalation card reaching the chat receiver", dashboard=sla_dashboard)
    artifacts.note(f"sla journey: card after {time.monotonic() - started:.1f}s")
    text = json.dumps(body, ensure_ascii=False)
    assert body["msg_type"] == "interactive"
    assert f"Escalation: demand #{pk}" in body["card"]["header"]["title"]["content"]
    assert words in text
    buttons = {b["text"]["content"]: b["url"] for b in body["card"]["elements"][1]["actions"]}
    claim = next(url for label, url in buttons.items() if "Claim" in label)
    assert claim.startswith(f"{sla_dashboard.url}/act/")

    # History on the demand: the escalation, and the reassignment to the team, by the policy.
    admin.goto(f"/demands/{pk}/")
    expect(admin.locator("main")).to_contain_text("escalated:")
    expect(admin.locator("main")).to_contain_text(TEAM)

    # The recipient (a member of the team, a triager) opens the claim link and confirms.
    member = sla_pages.open("polyglot", path=None)
    member.goto(claim)
    expect(member.locator("main")).to_contain_text(words)
    member.locator("main form button.primary").click()
    member.wait_for_url(re.compile(rf"/demands/{pk}/$"))
    expect(member.locator("main")).to_contain_text(re.compile(r"Done: .*Claim demand #" + str(pk)))
    assignee = member.locator("dl.props dt", has_text=re.compile(r"^Assignee$")).first.locator("xpath=following-sibling::dd[1]")
    expect(assignee).to_have_text("polyglot")
    artifacts.shoot(member, "sla-escalation-claimed")
    artifacts.note(f"sla journey: done after {time.monotonic() - started:.1f}s")
