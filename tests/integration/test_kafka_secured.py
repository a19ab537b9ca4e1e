"""A SASL/SCRAM listener on a private broker: the product connects with KAFKA_CONFIG_* only, and a
wrong password fails fast and clearly — no hang, no crash.

Slow: run with `-m slow` (its own broker, services/kafka.sh with KAFKA_SASL=1).
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import pytest

from demands.monitoring.probe import ProbeClient, ProbeFailed

from .processes import PrivateKafka, child_env, free_ports, wait_until
from .processes import ROOT

pytestmark = [pytest.mark.slow]


class SecuredKafka(PrivateKafka):
    def __init__(self):
        super().__init__()
        self.sasl_port = free_ports(1)[0]

    def script_env(self) -> dict:
        return {**super().script_env(), "KAFKA_SASL": "1", "KAFKA_SASL_PORT": str(self.sasl_port)}

    def client_env(self, password: str = "umsg-secret") -> dict:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{self.sasl_port}",
            "KAFKA_CONFIG_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_CONFIG_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_CONFIG_SASL_USERNAME": "umsg",
            "KAFKA_CONFIG_SASL_PASSWORD": password,
        }

    def client_config(self, password: str = "umsg-secret") -> dict:
        return {key[len("KAFKA_CONFIG_"):].lower().replace("_", ".") if key.startswith("KAFKA_CONFIG_") else "bootstrap.servers":
                value for key, value in self.client_env(password).items()}


@pytest.fixture(scope="module")
def secured_kafka():
    broker = SecuredKafka()
    try:
        broker.start()
        yield broker
    finally:
        broker.destroy()


def _manage(*args, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=child_env(env), capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.timeout(300)
def test_producer_consumer_and_monitor_work_over_scram_with_kafka_config_only(secured_kafka, pg_database):
    topic = f"sasl-{uuid.uuid4().hex[:8]}"
    env = {**secured_kafka.client_env(), "DATABASE_URL": pg_database.url, "KAFKA_TOPICS": topic,
           "KAFKA_DLQ_TOPIC": f"{topic}.dlq"}
    produced = _manage("produce_demands", "--demo", "--count", "20", "--rate", "1000", env=env)
    assert produced.returncode == 0, produced.stderr
    consumer = subprocess.Popen([sys.executable, "manage.py", "consume_demands", "--no-broadcast"], cwd=ROOT,
                                env=child_env(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: pg_database.count() >= 20 or consumer.poll() is not None, timeout=90, interval=0.5,
                   what="demands stored over SASL")
        assert consumer.poll() is None
        assert pg_database.count() == 20
    finally:
        consumer.terminate()
        assert consumer.wait(60) == 0
    probe = ProbeClient(secured_kafka.client_config())
    try:
        assert probe.ask(groups={"unified-msg": [topic]}, timeout=10)["cluster"]["brokers"]
    finally:
        probe.close()


@pytest.mark.timeout(180)
def test_a_wrong_password_makes_consume_demands_exit_non_zero_at_once_with_the_reason(secured_kafka, pg_database):
    env = {**secured_kafka.client_env(password="wrong"), "DATABASE_URL": pg_database.url}
    started = time.monotonic()
    result = _manage("consume_demands", "--no-broadcast", env=env, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Authentication failed" in result.stderr or "SASL authentication" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 60  # a bound against hanging, not a speed target


@pytest.mark.timeout(120)
@pytest.mark.django_db
def test_a_wrong_password_makes_readyz_503_with_the_reason_and_no_hang(secured_kafka, admin_client, monkeypatch):
    from demands.monitoring import health

    probe = ProbeClient(secured_kafka.client_config(password="wrong"))
    monkeypatch.setattr(health, "shared_probe", lambda: probe)
    try:
        with pytest.raises(ProbeFailed, match="(?i)authentication"):
            probe.ask(timeout=5)
        response = admin_client.get("/readyz")  # staff see the reason; anonymous callers only that it failed
    finally:
        probe.close()
    assert response.status_code == 503
    assert "uthentication" in response.content.decode()
