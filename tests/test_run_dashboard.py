import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_run_dashboard_exits_non_zero_when_it_cannot_listen(tmp_path):
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    try:
        result = subprocess.run(
            [sys.executable, "manage.py", "run_dashboard", "--no-consumer", "--no-demo", "--no-monitor", "--port", str(port)],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
            env={"PATH": "/usr/bin:/bin", "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "HOME": str(tmp_path)},
        )
    finally:
        blocker.close()
    assert result.returncode != 0
    assert f"could not listen on 127.0.0.1:{port}" in result.stderr


def test_the_bridge_is_embedded_with_the_flag_or_when_amqp_url_is_set():
    from demands.management.commands.run_dashboard import embed_amqp

    assert embed_amqp({"amqp": True}, {})
    assert embed_amqp({"amqp": False}, {"AMQP_URL": "amqp://rabbit/%2F"})
    assert not embed_amqp({"amqp": False}, {})
    assert not embed_amqp({"amqp": False, "no_amqp": True}, {"AMQP_URL": "amqp://rabbit/%2F"})


def test_run_dashboard_with_amqp_runs_the_bridge_and_stops_it_on_sigint(tmp_path):
    import signal
    import time

    def free_port():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    port, rabbit_port = free_port(), free_port()  # nothing listens on rabbit_port: the bridge retries
    log = tmp_path / "run.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "run_dashboard", "--amqp", "--no-consumer", "--no-demo", "--no-monitor", "--port", str(port)],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={"PATH": "/usr/bin:/bin", "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "HOME": str(tmp_path),
                 "AMQP_URL": f"amqp://guest:guest@127.0.0.1:{rabbit_port}/%2F", "AMQP_QUEUES": "demo-q", "PYTHONUNBUFFERED": "1"},
        )
    try:
        deadline = time.monotonic() + 60
        while "amqp: cannot connect" not in log.read_text() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
        text = log.read_text()
        assert "bridge amqp → kafka topic demand-topic" in text and "amqp: cannot connect" in text, text
        process.send_signal(signal.SIGINT)
        assert process.wait(30) is not None
        assert "bridge closed" in log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
