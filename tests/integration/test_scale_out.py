"""Scale-out with real processes: three `consume_demands` in one group on six partitions, and two
daphne servers on the Redis channel layer with a real websocket client on each.

Slow (a minute or so): run with `-m slow`.
"""

from __future__ import annotations

import http.cookiejar
import json
import re
import signal
import time
import urllib.parse
import urllib.request
import uuid

import pytest
import redis
from confluent_kafka.admin import AdminClient
from websockets.sync.client import connect as websocket_connect

from .processes import (
    SHARED_KAFKA,
    DemandFeed,
    OffsetWatch,
    assert_each_stored_exactly_once,
    committed_offsets,
    consumer_process,
    daphne_process,
    end_offsets,
    free_ports,
    port_open,
    run_manage,
    wait_until,
)

pytestmark = [pytest.mark.slow]
REDIS_URL = "redis://127.0.0.1:6380/5"  # our own Redis database (the cache); channels get a prefix too


def assignments(group: str) -> dict[str, set[int]]:
    """client.id → partitions, as the group coordinator sees it now."""
    admin = AdminClient({"bootstrap.servers": SHARED_KAFKA})  # kept referenced until the answer arrives
    description = admin.describe_consumer_groups([group])[group].result(10)
    return {member.client_id: {tp.partition for tp in member.assignment.topic_partitions} for member in description.members}


@pytest.mark.timeout(240)
def test_three_consumers_share_six_partitions_and_take_over_from_a_killed_one(pg_database, new_topic, started, tmp_path):
    topic, group = new_topic(partitions=6), f"rel-{uuid.uuid4().hex[:8]}"
    feed = DemandFeed(SHARED_KAFKA, topic, count=12_000, rate=300).start()
    consumers = {
        name: consumer_process(topic=topic, group=group, database=pg_database, log_dir=tmp_path, name=name,
                               extra_env={"KAFKA_CONFIG_CLIENT_ID": name})
        for name in ("c1", "c2", "c3")
    }
    for consumer in consumers.values():
        started.append(consumer.start())
    watch = OffsetWatch(SHARED_KAFKA, group, topic, 6, feed, pg_database).start()

    def balanced():
        now = assignments(group)
        return now if sorted(now) == ["c1", "c2", "c3"] and all(len(parts) == 2 for parts in now.values()) else None

    before = wait_until(balanced, timeout=60, interval=0.5, what="three members with two partitions each")
    assert set().union(*before.values()) == set(range(6))
    stored = pg_database.count()
    wait_until(lambda: pg_database.count() > stored + 500, timeout=60, what="all three consuming")

    consumers["c2"].signal(signal.SIGKILL)
    assert consumers["c2"].wait(10) == -signal.SIGKILL

    def taken_over():
        now = assignments(group)
        return now if sorted(now) == ["c1", "c3"] and set().union(*now.values()) == set(range(6)) else None

    after = wait_until(taken_over, timeout=60, interval=0.5, what="c2's partitions moved to c1 and c3")
    # Cooperative-sticky: the survivors keep what they had and split c2's two partitions.
    assert before["c1"] <= after["c1"] and before["c3"] <= after["c3"]

    feed.join()
    wait_until(lambda: pg_database.count() >= feed.count, timeout=120, interval=0.5, what="every demand stored")
    wait_until(lambda: committed_offsets(SHARED_KAFKA, group, topic, 6) == end_offsets(SHARED_KAFKA, topic, 6),
               timeout=60, interval=0.5, what="every offset committed")
    for name in ("c1", "c3"):
        assert consumers[name].stop() == 0
        stored_by = int(re.search(r"(\d+) demands stored", consumers[name].log()).group(1))
        assert stored_by > 0, f"{name} stored nothing"
    watch.stop()
    watch.check_once()
    assert watch.violations == []
    assert_each_stored_exactly_once(pg_database, feed)


# -- two daphne processes -------------------------------------------------------------------------
SESSION_SCRIPT = """
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
user = get_user_model().objects.create_user(username="{name}", is_staff=True)
user.groups.add(Group.objects.get(name="Triagers"))
client = Client()
client.force_login(user)
print(client.cookies["sessionid"].value)
"""


def staff_session(database, name: str) -> str:
    """A signed-in triager's session key, written to the servers' database like a login would."""
    return run_manage("shell", "-c", SESSION_SCRIPT.format(name=name), env={"DATABASE_URL": database.url}).strip().splitlines()[-1]


class Browser:
    """Cookies + CSRF like a browser on one daphne; HTTP straight to loopback (no proxies)."""

    def __init__(self, port: int, session: str):
        self.base = f"http://127.0.0.1:{port}"
        self.jar = http.cookiejar.CookieJar()
        self.session = session
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                                  urllib.request.HTTPCookieProcessor(self.jar))
        self.request("GET", "/demands/")  # the page sets the csrftoken cookie

    @property
    def csrf(self) -> str:
        return next(cookie.value for cookie in self.jar if cookie.name == "csrftoken")

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None) -> int:
        headers = {"Cookie": f"sessionid={self.session}" + (f"; csrftoken={self.csrf}" if method != "GET" else "")}
        if method != "GET":
            headers.update({"X-CSRFToken": self.csrf, "Origin": self.base, "Referer": self.base + "/demands/"})
        if content_type:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(self.base + path, data=body, method=method, headers=headers)
        with self.opener.open(request, timeout=15) as response:
            return response.status

    def websocket(self, path: str):
        return websocket_connect(f"ws://127.0.0.1:{self.base.rsplit(':', 1)[1]}{path}", origin=self.base,
                                 additional_headers={"Cookie": f"sessionid={self.session}"}, proxy=None, open_timeout=10)


def receive_until(ws, predicate, *, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            frame = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            break
        if predicate(frame):
            return frame
        seen.append(frame[:200])
    raise AssertionError(f"no matching frame within {timeout}s; got {seen}")


@pytest.fixture
def channel_prefix():
    prefix = f"umsg-rel-{uuid.uuid4().hex[:8]}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.mark.timeout(180)
def test_two_daphne_processes_on_redis_each_see_arrivals_and_triage_made_through_the_other(
    pg_database, new_topic, started, tmp_path, channel_prefix
):
    port_a, port_b = free_ports(1)[0], free_ports(1)[0]
    servers = [daphne_process(port=port, database=pg_database, redis_url=REDIS_URL, prefix=channel_prefix,
                              log_dir=tmp_path, name=f"daphne-{port}") for port in (port_a, port_b)]
    topic = new_topic(partitions=3)
    consumer = consumer_process(topic=topic, group=f"rel-{uuid.uuid4().hex[:8]}", database=pg_database, log_dir=tmp_path,
                                broadcast=True, extra_env={"REDIS_URL": REDIS_URL, "REDIS_CHANNEL_PREFIX": channel_prefix})
    for process in (*servers, consumer):
        started.append(process.start())
    wait_until(lambda: port_open(port_a) and port_open(port_b), timeout=30, what="both daphne servers listening")

    session = staff_session(pg_database, "triager")
    on_a, on_b = Browser(port_a, session), Browser(port_b, session)
    with on_a.websocket("/ws/demands/") as list_a, on_b.websocket("/ws/demands/") as list_b:
        time.sleep(0.5)  # both sockets have joined their groups (in Redis) before anything happens

        # An arrival, broadcast by the consumer process: both servers' browsers get the row.
        feed = DemandFeed(SHARED_KAFKA, topic, count=1, rate=10, source="scale-test").start()
        feed.join()
        for ws in (list_a, list_b):
            receive_until(ws, lambda frame: 'id="demand-rows"' in frame and "页面加载太慢 #0" in frame)
        [(pk,)] = pg_database.query("SELECT id FROM demands_demand")

        with on_a.websocket(f"/ws/demands/{pk}/") as detail_a, on_b.websocket(f"/ws/demands/{pk}/") as detail_b:
            time.sleep(0.5)
            # A triage change through B's JSON API reaches the browser on A (list row and detail page)…
            assert on_b.request("PATCH", f"/api/demands/{pk}/", json.dumps({"priority": "urgent"}).encode(),
                                "application/json") == 200
            receive_until(list_a, lambda frame: 'id="demand-updates"' in frame and "priority-urgent" in frame)
            receive_until(detail_a, lambda frame: 'id="demand-summary"' in frame and "priority-urgent" in frame)
            # …and one through A's form reaches the browser on B.
            form = urllib.parse.urlencode({"status": "triaged", "csrfmiddlewaretoken": on_a.csrf}).encode()
            assert on_a.request("POST", f"/demands/{pk}/status/", form, "application/x-www-form-urlencoded") == 200
            receive_until(list_b, lambda frame: 'id="demand-updates"' in frame and "status-triaged" in frame)
            receive_until(detail_b, lambda frame: 'id="demand-summary"' in frame and "status-triaged" in frame)

    for process in (*servers, consumer):
        process.stop()
    assert "Traceback" not in "".join(server.log() for server in servers), servers[0].log()[-2000:]
