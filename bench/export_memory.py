"""CSV export under daphne at scale: does the server's memory stay flat while it streams? Not a test:
it prints peak RSS, time to first byte, total time and rows/s.

    .venv/bin/python -m bench.export_memory [--rows 1000000] [--before] [--keep DIR]

Fills a SQLite file in a temporary directory with N demands (one INSERT … SELECT over a recursive
CTE per 100,000 rows, with progress), starts `daphne unified_msg_site.asgi:application` on a free
loopback port in a subprocess with DATABASE_URL pointing at that file, signs a superuser in (a
session row and its cookie), GETs /demands/export.csv once, and samples the daphne process's RSS
(/proc/PID/status VmRSS) every 20 ms while it reads the response in 64 KiB pieces.

--before serves the export the way it was before the async iterator: Django's ASGI handler reads a
sync iterator whole into a list, then sends it (the figure to compare with).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHUNK = 100_000

FILL = """
WITH RECURSIVE g(n) AS (SELECT ? UNION ALL SELECT n + 1 FROM g WHERE n < ?)
INSERT INTO demands_demand (source, message_id, type, content, occurred_at, priority, status, tags, extra,
    kafka_topic, kafka_partition, kafka_offset, received_at, category, version, updated_at, rule_changes)
SELECT json_extract('["web_app","ios_app","android_app","order-service","payment-service","api-gateway","crm"]', '$[' || (n % 7) || ']'),
       'b' || n,
       json_extract('["user_feedback","user_feedback","log_exception","api_anomaly","feature_request"]', '$[' || (n % 5) || ']'),
       json_extract('["页面加载太慢,请优化。","支付完成后订单状态一直显示待支付","TimeoutError: upstream payment gateway did not answer",
                      "The checkout button does nothing on Safari","=HYPERLINK(\\"http://x\\")","5xx rate on POST /api/payments reached 7%",
                      "Redis 连接池耗尽:acquire timeout","KeyError: user_id in auth/session.py"]', '$[' || ((n / 7) % 8) || ']') || ' #' || n,
       datetime('now', '-' || n || ' seconds'),
       json_extract('["normal","normal","normal","high","low","urgent"]', '$[' || (n % 6) || ']'),
       json_extract('["new","new","triaged","in_progress","resolved","resolved","rejected"]', '$[' || ((n / 3) % 7) || ']'),
       '["performance"]', '{}', 'demand-topic', n % 6, n, datetime('now', '-' || n || ' seconds'), '', 0,
       datetime('now'), '[]'
FROM g
"""

# Serves the export with the sync iterator under ASGI (what the code did before): for --before.
BEFORE_SERVER = """
import os, sys
import django
django.setup()
from demands import views
views._export_async = views._export_sync
from daphne.cli import CommandLineInterface
sys.argv = ["daphne", *sys.argv[1:]]
CommandLineInterface.entrypoint()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def fill(path: Path, rows: int) -> None:
    started = time.monotonic()
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=OFF")
    connection.execute("PRAGMA synchronous=OFF")
    for start in range(1, rows + 1, CHUNK):
        end = min(start + CHUNK - 1, rows)
        with connection:
            connection.execute(FILL, (start, end))
        print(f"  generated {end:,}/{rows:,} rows ({time.monotonic() - started:.0f} s)", flush=True)
    connection.execute("ANALYZE")
    connection.close()


def session_cookie() -> str:
    """A signed-in superuser's session cookie, written straight into the bench database."""
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    user = get_user_model().objects.filter(username="bench").first()
    user = user or get_user_model().objects.create_superuser(username="bench", password=None)
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def wait_for(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"daphne exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("daphne did not start listening")


def export(port: int, cookie: str, pid: int) -> dict:
    samples: list[int] = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            try:
                samples.append(rss_kib(pid))
            except OSError:
                return
            time.sleep(0.02)

    idle = rss_kib(pid)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    started = time.perf_counter()
    connection.request("GET", "/demands/export.csv", headers={"Cookie": cookie, "Host": "127.0.0.1"})
    response = connection.getresponse()
    assert response.status == 200, (response.status, response.read(500))
    first = response.read(1)
    ttfb = time.perf_counter() - started
    total_bytes, newlines, last = len(first), first.count(b"\n"), b""
    while piece := response.read(65536):
        total_bytes += len(piece)
        newlines += piece.count(b"\n")
        last = piece
    elapsed = time.perf_counter() - started
    stop.set()
    sampler.join()
    connection.close()
    return {"idle_kib": idle, "peak_kib": max(samples or [idle]), "ttfb": ttfb, "elapsed": elapsed,
            "bytes": total_bytes, "rows": newlines - 1, "tail": last[-80:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--before", action="store_true", help="serve the export as before (sync iterator under ASGI)")
    parser.add_argument("--keep", metavar="DIR", help="use (and keep) this directory; reuses a filled database")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally below: daphne stops too

    directory = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="umsg-export-"))
    directory.mkdir(parents=True, exist_ok=True)
    database = directory / f"export-{args.rows}.sqlite3"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{database}", "DJANGO_SETTINGS_MODULE": "unified_msg_site.settings",
           "DJANGO_DEBUG": "0", "DJANGO_SECURE_SSL_REDIRECT": "0", "DJANGO_SECURE_COOKIES": "0",
           "DJANGO_SECRET_KEY": "bench-export-memory-not-secret", "DJANGO_ALLOWED_HOSTS": "127.0.0.1"}
    env.pop("REDIS_URL", None)
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    try:  # a temporary directory goes whatever happens
        fresh = not database.exists()
        if fresh:
            subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
            print(f"filling {database} with {args.rows:,} demands", flush=True)
            fill(database, args.rows)
        cookie = session_cookie()

        port = free_port()
        command = ["-b", "127.0.0.1", "-p", str(port), "unified_msg_site.asgi:application"]
        command = [sys.executable, "-c", BEFORE_SERVER, *command] if args.before else [sys.executable, "-m", "daphne", *command]
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:  # from here on, every way out stops daphne
            wait_for(port, server)
            result = export(port, cookie, server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
    finally:
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)
    assert result["rows"] == args.rows, (result["rows"], args.rows)
    mode = "before (sync iterator under ASGI)" if args.before else "streaming (async iterator)"
    print(f"\nexport of {args.rows:,} demands, {mode}:")
    print(f"  daphne RSS idle       {result['idle_kib'] / 1024:8.1f} MiB")
    print(f"  daphne RSS peak       {result['peak_kib'] / 1024:8.1f} MiB  (+{(result['peak_kib'] - result['idle_kib']) / 1024:.1f})")
    print(f"  time to first byte    {result['ttfb']:8.2f} s")
    print(f"  total time            {result['elapsed']:8.2f} s")
    print(f"  rows/s                {args.rows / result['elapsed']:8,.0f}")
    print(f"  body                  {result['bytes'] / 1024 / 1024:8.1f} MiB")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    figures = {"rows": args.rows, "mode": "before" if args.before else "streaming", "idle_rss_mib": round(result["idle_kib"] / 1024, 1),
               "peak_rss_mib": round(result["peak_kib"] / 1024, 1), "ttfb_s": round(result["ttfb"], 2),
               "total_s": round(result["elapsed"], 2), "rows_per_s": round(args.rows / result["elapsed"])}
    (out / f"export-{figures['mode']}-{args.rows}-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
