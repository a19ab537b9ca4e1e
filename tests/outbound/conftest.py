"""Fixtures for outbound notifications: a local chat/webhook receiver on this worktree's ports
(8540-8559), users with addresses and languages, demands, channels; loopback allowed as a target."""

import http.server
import itertools
import json
import queue
import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from demands.models import Demand, OutboundChannel, Subscription, Team, UserPreference
from tests.conftest import role

PORTS = range(8540, 8560)


class Receiver:
    """Records POSTs (path, headers, body); answers with queued (status, body) pairs, else 200 and `default_body`."""

    def __init__(self):
        self.requests: list[dict] = []
        self.answers: "queue.Queue[tuple[int, bytes]]" = queue.Queue()
        self.default_body = b'{"errcode":0,"errmsg":"ok","code":0}'
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                try:
                    status, answer = receiver.answers.get_nowait()
                except queue.Empty:
                    status, answer = 200, receiver.default_body
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        for port in PORTS:
            try:
                self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
                break
            except OSError:
                continue
        else:
            raise RuntimeError("no free port in 8540-8559")
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def json(self, index: int = -1) -> dict:
        return json.loads(self.requests[index]["body"])


@pytest.fixture
def receiver(settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    receiver = Receiver()
    receiver.thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.fixture(autouse=True)
def _outbound_settings(settings):
    settings.PUBLIC_BASE_URL = "https://umsg.example.com"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.OUTBOUND_FLOOD_LIMIT = 5
    settings.OUTBOUND_FLOOD_WINDOW_SECONDS = 300
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # users are made in every test


_ids = itertools.count(1)


def make_demand(**fields) -> Demand:
    fields.setdefault("content", "页面加载太慢,请优化。")
    now = timezone.now()
    return Demand.objects.create(source=fields.pop("source", "web_app"), message_id=f"o{next(_ids)}",
                                 type=fields.pop("type", "user_feedback"), occurred_at=now - timedelta(seconds=1),
                                 received_at=now, **fields)


@pytest.fixture
def alice(django_user_model):
    user = django_user_model.objects.create_user(username="alice", password="pw-alice-123", is_staff=True,
                                                 email="alice@example.com")
    user.groups.add(role("Triagers"))
    return user


@pytest.fixture
def bob(django_user_model):
    user = django_user_model.objects.create_user(username="bob", password="pw-bob-123", is_staff=True, email="bob@example.com")
    user.groups.add(role("Triagers"))
    UserPreference.objects.create(user=user, language="zh-hans")
    return user


@pytest.fixture
def team(alice, bob):
    team = Team.objects.create(name="Ops")
    team.members.add(alice, bob)
    return team


def channel(receiver, kind, *, team=None, secret="", path="/hook", **fields) -> OutboundChannel:
    return OutboundChannel.objects.create(name=f"{kind} channel", kind=kind, target=receiver.url(path), secret=secret,
                                          team=team, **fields)


def subscribe(*, kind, user=None, team=None, channel=None) -> Subscription:
    return Subscription.objects.create(user=user, team=team, kind=kind, channel=channel)
