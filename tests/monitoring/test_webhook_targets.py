"""Webhook targets are typed by staff and reached from inside the network: internal addresses are
refused unless allowed, redirects and proxies are not followed, one deadline bounds a delivery,
staff see no connection detail, and a slow receiver never holds up rule evaluation."""

import http.server
import logging
import socket
import threading
import time
import urllib.request
from datetime import timedelta

import pytest

from demands.monitoring import monitor as monitor_module
from demands.monitoring import webhooks
from demands.monitoring.alerts import evaluate_rules
from demands.monitoring.models import AlertDelivery, AlertRule
from demands.monitoring.notify import process_deliveries
from demands.monitoring.webhooks import WebhookError, post_webhook

from .conftest import make_rule

real_getaddrinfo = socket.getaddrinfo


def post(url, timeout=2.0):
    return post_webhook(url, {"a": 1}, secret="", event="firing", delivery_id=1, timestamp=0, timeout=timeout)


def resolving(monkeypatch, name, *answers):
    """`name` resolves to answers[0] on the first lookup, answers[1] on the second, …"""
    calls = []

    def getaddrinfo(host, port, *args, **kwargs):
        if host != name:
            return real_getaddrinfo(host, port, *args, **kwargs)
        calls.append(host)
        answer = answers[min(len(calls), len(answers)) - 1]
        family = socket.AF_INET6 if ":" in answer else socket.AF_INET
        sockaddr = (answer, port, 0, 0) if family == socket.AF_INET6 else (answer, port)
        return [(family, socket.SOCK_STREAM, 6, "", sockaddr)]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return calls


def test_a_loopback_target_is_refused_unless_allowed(webhook_receiver, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = []
    with pytest.raises(WebhookError, match="not allowed"):
        post(webhook_receiver.url)
    assert webhook_receiver.requests == []
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.0/8"]  # a network allows every address in it
    assert post(webhook_receiver.url) == 200


@pytest.mark.parametrize("address", [
    "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "224.0.0.1", "0.0.0.0", "240.0.0.1",
    "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1", "::",
])
def test_internal_addresses_are_refused_before_any_connection(address, monkeypatch, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = []
    resolving(monkeypatch, "hooks.example.com", address)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("connected to a refused address"))
    with pytest.raises(WebhookError, match="not allowed"):
        post("http://hooks.example.com/alerts")


def test_one_internal_address_among_public_ones_refuses_the_host(monkeypatch, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = []
    answers = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 80)) for a in ("93.184.216.34", "10.0.0.8")]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: answers)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("connected"))
    with pytest.raises(WebhookError, match="not allowed"):
        post("http://mixed.example.com/")


def test_the_connection_goes_to_the_checked_address_not_a_second_lookup(webhook_receiver, monkeypatch, settings):
    # DNS rebinding: the first answer passes the check, a second lookup would answer elsewhere.
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1/32"]
    calls = resolving(monkeypatch, "hooks.example.com", "127.0.0.1", "127.0.0.2")
    port = webhook_receiver.server.server_address[1]
    assert post(f"http://hooks.example.com:{port}/alerts?x=1") == 200
    assert calls == ["hooks.example.com"]
    request = webhook_receiver.requests[0]
    assert request["path"] == "/alerts?x=1" and request["headers"]["Host"] == f"hooks.example.com:{port}"


def test_an_allowed_host_name_may_resolve_to_an_internal_address(webhook_receiver, monkeypatch, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["Alerts.Internal"]
    resolving(monkeypatch, "alerts.internal", "127.0.0.1")
    assert post(f"http://alerts.internal:{webhook_receiver.server.server_address[1]}/") == 200


class Server:
    def __init__(self, handler):
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.hits = []
        self.server.hits = self.hits
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def redirecting_to(location):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.server.hits.append(self.path)
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    return Handler


def test_redirects_are_not_followed(webhook_receiver, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    redirector = Server(redirecting_to(webhook_receiver.url))
    try:
        with pytest.raises(WebhookError) as raised:
            post(redirector.url)
    finally:
        redirector.close()
    assert raised.value.status == 302 and redirector.hits == ["/"]
    assert webhook_receiver.requests == []


def test_proxy_variables_are_ignored(webhook_receiver, monkeypatch, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    proxy = Server(redirecting_to("http://unused/"))
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", proxy.url)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setattr(urllib.request, "_opener", None)  # urllib reads proxy variables once per opener
    try:
        assert post(webhook_receiver.url) == 200
    finally:
        proxy.close()
    assert proxy.hits == [] and len(webhook_receiver.requests) == 1


class Dripping(http.server.BaseHTTPRequestHandler):
    """Answers one byte at a time: every read succeeds well within a socket timeout."""

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            for byte in b"HTTP/1.1 200 OK\r\nX-Padding: " + b"x" * 60 + b"\r\nContent-Length: 0\r\n\r\n":
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.1)
        except OSError:
            pass

    def log_message(self, *args):
        pass


def test_one_deadline_bounds_the_whole_delivery(settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    dripping = Server(Dripping)
    try:
        with pytest.raises(WebhookError, match="deadline"):
            post(dripping.url, timeout=1.0)
    finally:
        dripping.close()


@pytest.mark.django_db
def test_staff_see_connection_failed_and_the_log_has_the_detail(now, settings, caplog):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{probe.getsockname()[1]}/"
    make_rule(AlertRule.Kind.HEARTBEAT_MISSING, threshold=30, notify_browser=False, webhook_url=dead_url)
    evaluate_rules(now=now)
    with caplog.at_level(logging.WARNING, logger="demands.monitoring.webhooks"):
        process_deliveries(now=now)
    delivery = AlertDelivery.objects.get(channel="webhook")
    assert delivery.last_error == "Connection failed"
    assert "refused" in caplog.text.lower()


@pytest.mark.django_db
def test_an_e_mail_failure_shows_no_smtp_detail_to_staff(now, monkeypatch):
    from demands.monitoring import notify

    def broken_send_mail(*args, **kwargs):
        raise OSError("535 5.7.8 auth failed for relay.internal:587 user alerts@corp")

    monkeypatch.setattr(notify, "send_mail", broken_send_mail)
    make_rule(AlertRule.Kind.HEARTBEAT_MISSING, threshold=30, notify_browser=False, email_to="ops@example.com")
    evaluate_rules(now=now)
    process_deliveries(now=now)
    delivery = AlertDelivery.objects.get(channel="email")
    assert "relay.internal" not in delivery.last_error and delivery.last_error


def test_a_slow_delivery_does_not_hold_up_the_next_evaluation(monkeypatch):
    release, evaluated_twice = threading.Event(), threading.Event()
    evaluations = []

    def evaluate_rules(*, now):
        evaluations.append(now)
        if len(evaluations) >= 2:
            evaluated_twice.set()

    def stuck_deliveries(*, now, **kwargs):
        release.wait(30)  # a receiver that takes its time

    for name in ("rollup_history", "snapshot_backlog", "prune"):
        monkeypatch.setattr(monitor_module, name, lambda *, now: None)
    monkeypatch.setattr(monitor_module, "evaluate_rules", evaluate_rules)
    monkeypatch.setattr(monitor_module, "process_deliveries", stuck_deliveries)
    monkeypatch.setattr(monitor_module.MonitoringCursor.objects, "update_or_create", lambda **kwargs: None)
    monkeypatch.setattr(monitor_module, "close_old_connections", lambda: None)
    monkeypatch.setattr(monitor_module.connections, "close_all", lambda: None)
    stop = threading.Event()
    monitor = monitor_module.Monitor(sample_lag=False, broadcast=False, interval=0.01)
    runner = threading.Thread(target=monitor.run, args=(stop,), daemon=True)
    runner.start()
    try:
        assert evaluated_twice.wait(10), "the monitor waited for the stuck delivery before evaluating again"
    finally:
        release.set()
        stop.set()
        runner.join(10)
    assert not runner.is_alive()
