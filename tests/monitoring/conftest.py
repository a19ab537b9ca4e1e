"""Fixtures for monitoring tests: a fixed clock, demands and rules made in one line, a local webhook server."""

import http.server
import json
import queue
import threading
from datetime import datetime, timedelta, timezone

import pytest

from demands.models import Demand
from demands.monitoring.models import AlertRule

NOW = datetime(2025, 4, 5, 10, 30, 20, tzinfo=timezone.utc)  # 20 s into a minute


@pytest.fixture(autouse=True)
def _without_default_rules(request):
    """Migration 0019 ships default alert rules; these tests make the rules they mean (a test
    asking for the `default_rules` fixture keeps them)."""
    marker = request.node.get_closest_marker("django_db")
    if marker is None or "default_rules" in request.fixturenames:
        return
    request.getfixturevalue("transactional_db" if marker.kwargs.get("transaction") else "db")
    AlertRule.objects.all().delete()


@pytest.fixture
def default_rules():
    """The rules as migration 0019 leaves them (see _without_default_rules)."""
    return list(AlertRule.objects.order_by("id"))


@pytest.fixture
def now():
    return NOW


_counter = iter(range(1, 10**9))


def make_demand(*, received_at=NOW, priority="normal", status="new", type="user_feedback", source="web_app", **fields):
    return Demand.objects.create(
        source=source, message_id=f"m{next(_counter)}", type=type, content=fields.pop("content", "页面加载太慢,请优化。"),
        occurred_at=received_at - timedelta(seconds=1), received_at=received_at, priority=priority, status=status, **fields,
    )


def make_rule(kind, **fields):
    defaults = {"name": f"{kind} rule", "kind": kind, "renotify_minutes": 0}
    defaults.update(fields)
    return AlertRule.objects.create(**defaults)


class WebhookReceiver:
    """A local http.server on 127.0.0.1 that records POSTs and answers with queued status codes (200 when empty)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.statuses: "queue.Queue[int]" = queue.Queue()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                try:
                    status = receiver.statuses.get_nowait()
                except queue.Empty:
                    status = 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/alerts"

    def json(self, index: int) -> dict:
        return json.loads(self.requests[index]["body"])


@pytest.fixture
def webhook_receiver():
    receiver = WebhookReceiver()
    receiver.thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()
