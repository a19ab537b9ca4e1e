"""The real dashboard as a subprocess for browser tests: `manage.py run_dashboard --no-demo` on a
private SQLite file, Kafka topic and consumer group, plus a producer that feeds it demands."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

REPO_ROOT = Path(__file__).resolve().parents[2]
# E2E_PORTS="8460-8479": another range, so parallel runs on one machine keep to their own ports.
_FIRST, _, _LAST = os.environ.get("E2E_PORTS", "8060-8079").partition("-")
PORT_RANGE = range(int(_FIRST), int(_LAST or _FIRST) + 1)
PASSWORD = "e2e-Pass-4711"

# Users the journeys sign in as. The triager is a superuser (admin + triage); the assignee is
# staff who may only look; the polyglot switches languages without disturbing the others.
USERS_SCRIPT = f"""
from django.contrib.auth.models import Group, User
User.objects.create_superuser("triager", "triager@example.com", {PASSWORD!r})
for name, role in (("assignee", "Viewers"), ("polyglot", "Triagers")):
    user = User.objects.create_user(name, f"{{name}}@example.com", {PASSWORD!r}, is_staff=True)
    user.groups.add(Group.objects.get(name=role))
"""


def free_port() -> int:
    for port in PORT_RANGE:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as daphne (Twisted) binds
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORT_RANGE.start}-{PORT_RANGE.stop - 1}")


class Dashboard:
    """One dashboard process at a time on a fixed port; stop() then start() again keeps the port,
    the database, the topic and the consumer group (it resumes from its committed offsets)."""

    def __init__(self, *, workdir: Path, log_path: Path, kafka_config: dict):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db_path = workdir / "e2e.sqlite3"
        self.log_path = log_path
        tag = uuid.uuid4().hex[:10]
        self.host_name = f"e2e-{tag}.localhost"
        self.topic = self.group = f"e2e-{tag}"
        self.dlq_topic = f"{self.topic}.dlq"
        # Inherit the broker settings (KAFKA_BOOTSTRAP_SERVERS, KAFKA_CONFIG_*); never a shared
        # database or channel layer: this process is the embedded default, on its own file.
        self.env = {key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "REDIS_URL"}}
        self.env.update({
            "DATABASE_URL": f"sqlite:///{self.db_path}",
            "KAFKA_TOPICS": self.topic,
            "KAFKA_DLQ_TOPIC": self.dlq_topic,
            "KAFKA_CONSUMER_GROUP": self.group,
            "KAFKA_TOPIC_PARTITIONS": "3",
            "DJANGO_DEBUG": "1",
            # A host name only this process allows: readiness checks then cannot be answered by
            # some other server that happens to hold the port (it would say 400 Bad Request).
            "DJANGO_ALLOWED_HOSTS": f"127.0.0.1,localhost,{self.host_name}",
            "PYTHONUNBUFFERED": "1",
            "DJANGO_SETTINGS_MODULE": "unified_msg_site.settings",
        })
        self.feed = Feed(config=kafka_config, topic=self.topic)
        self.process: subprocess.Popen | None = None
        self._log = None

    # -- set-up ----------------------------------------------------------------------------------
    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=REPO_ROOT, env=self.env, capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args[:1])} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def prepare(self) -> None:
        self.manage("migrate", "--noinput", "-v", "0")
        self.manage("shell", "-c", USERS_SCRIPT)

    # -- process control -------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> None:
        self._log = open(self.log_path, "a", encoding="utf-8")
        self._log.write(f"\n===== start {datetime.now().isoformat(timespec='seconds')} on port {self.port} =====\n")
        self._log.flush()
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "run_dashboard", "--no-demo", "--port", str(self.port)],
            cwd=REPO_ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dashboard exited with {self.process.returncode}:\n{self.log_tail()}")
            request = urllib.request.Request(f"{self.url}/login/", headers={"Host": f"{self.host_name}:{self.port}"})
            try:
                with urllib.request.urlopen(request, timeout=2) as response:
                    if response.status == 200:
                        return
            except urllib.error.HTTPError as exc:
                self.stop()
                raise RuntimeError(f"port {self.port} answers {exc.code}: is another server on it?\n{self.log_tail()}") from exc
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"dashboard did not answer within {timeout:.0f}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (the consume loop finishes its batch and commits), SIGKILL if it hangs."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def check_running(self) -> None:
        if self.process is None or self.process.poll() is not None:
            code = None if self.process is None else self.process.returncode
            raise RuntimeError(f"the dashboard is not running (exit code {code}):\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- database (read-only peeks, for waiting on ingestion) -----------------------------------
    def _count(self, sql: str, *params) -> int:
        connection = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5)
        try:
            return connection.execute(sql, params).fetchone()[0]
        finally:
            connection.close()

    def stored(self, *, source: str) -> tuple[int, int]:
        """(demands from `source`, rejected messages) in the database."""
        return (
            self._count("SELECT COUNT(*) FROM demands_demand WHERE source = ?", source),
            self._count("SELECT COUNT(*) FROM demands_rejectedmessage"),
        )

    def wait_until_stored(self, *, source: str, demands: int, rejected: int = 0, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stored(source=source) >= (demands, rejected):
                return
            time.sleep(0.2)
        raise RuntimeError(
            f"stored (demands, rejected) = {self.stored(source=source)}, expected {(demands, rejected)} within {timeout:.0f}s:\n"
            f"{self.log_tail()}"
        )


class Feed:
    """Produces demands to the dashboard's topic, exactly as a source system would."""

    def __init__(self, *, config: dict, topic: str):
        self.config = dict(config)
        self.topic = topic
        self.producer = Producer({**self.config, "linger.ms": 0, "enable.idempotence": True})

    def create_topics(self) -> None:
        """The topic and its dead-letter topic, fresh for this session."""
        admin = AdminClient(self.config)
        topics = [NewTopic(self.topic, num_partitions=3), NewTopic(f"{self.topic}.dlq", num_partitions=1)]
        for future in admin.create_topics(topics).values():
            future.result(timeout=15)

    def delete_topics(self, *, group: str) -> None:
        """Leave nothing behind on the broker: the topics and the consumer group's offsets."""
        admin = AdminClient(self.config)
        futures = [
            *admin.delete_topics([self.topic, f"{self.topic}.dlq"], operation_timeout=10).values(),
            *admin.delete_consumer_groups([group], request_timeout=10).values(),
        ]
        for future in futures:
            try:
                future.result(timeout=15)
            except Exception:  # best effort: a leftover test topic harms nothing
                pass

    def send(self, *, content: str, type: str = "user_feedback", source: str = "e2e-web", **extra) -> dict:
        message = {
            "id": uuid.uuid4().hex,
            "type": type,
            "content": content,
            "timestamp": datetime.now(timezone.utc).isoformat(),
            "source": source,
            **extra,
        }
        self.producer.produce(
            self.topic, value=json.dumps(message, ensure_ascii=False).encode(), key=f"{source}:{message['id']}".encode()
        )
        self.producer.poll(0)
        return message

    def send_raw(self, value: bytes) -> None:
        """Bytes that are not a valid demand: the consumer rejects them (Rejected page, DLQ)."""
        self.producer.produce(self.topic, value=value)
        self.producer.poll(0)

    def flush(self) -> None:
        remaining = self.producer.flush(15)
        if remaining:
            raise RuntimeError(f"{remaining} demands not delivered to Kafka")
