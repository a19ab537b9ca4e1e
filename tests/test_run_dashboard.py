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
