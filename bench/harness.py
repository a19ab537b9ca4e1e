"""What every benchmark needs: fresh databases, child processes that are always stopped, progress.

Databases: a template is migrated once per run (PostgreSQL: `CREATE DATABASE … TEMPLATE`; SQLite: a
file copy), so each measurement starts from an empty, fully migrated schema in about a second.
Only databases and files named by this module are created or dropped (`umsg_bench_<pid>_…`).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PYTHON = sys.executable
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def tool(name: str) -> str | None:
    """A console script from this interpreter's environment (the venv need not be activated)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else shutil.which(name)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


BENCH_SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(50)


def child_env(database_url: str, **extra: str) -> dict:
    env = dict(os.environ)
    # DEBUG off refuses the built-in key: one random key per run, shared by its processes (sessions).
    env.update({"DATABASE_URL": database_url, "DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": BENCH_SECRET_KEY,
                "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def manage(*args: str, database_url: str, timeout: float = 300) -> str:
    proc = subprocess.run(
        [PYTHON, "manage.py", *args], cwd=ROOT, env=child_env(database_url), capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


# -- databases -------------------------------------------------------------------------------------
class BenchDatabase:
    kind: str
    url: str

    def count(self) -> int: ...
    def received_at(self) -> list[datetime]: ...
    def drop(self) -> None: ...


class PostgresTemplate:
    """A migrated template database; `fresh()` clones it. Admin work goes through the `postgres` db."""

    def __init__(self, server_url: str, tag: str):
        self.server_url = server_url.rstrip("/")
        self.admin_url = f"{self.server_url}/postgres"
        self.prefix = f"umsg_bench_{tag}"
        self.name = f"{self.prefix}_template"
        self.clones = 0
        self.live: set[str] = set()  # clones not dropped yet: `drop()` removes them too
        self._execute(f'DROP DATABASE IF EXISTS "{self.name}"')
        self._execute(f'CREATE DATABASE "{self.name}"')
        self.url = f"{self.server_url}/{self.name}"

    def _execute(self, sql: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql)

    def fresh(self, label: str) -> PostgresDatabase:
        self.clones += 1
        name = f"{self.prefix}_{self.clones}_{label}"[:63]
        self._execute(f'DROP DATABASE IF EXISTS "{name}"')
        self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.name}"')
        self.live.add(name)
        return PostgresDatabase(self, name)

    def drop(self) -> None:
        for name in [*self.live, self.name]:
            self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.live.clear()


class PostgresDatabase(BenchDatabase):
    kind = "postgres"

    def __init__(self, template: PostgresTemplate, name: str):
        self.template = template
        self.name = name
        self.url = f"{template.server_url}/{name}"
        self._conn = psycopg.connect(self.url, autocommit=True)

    def count(self) -> int:
        return self._conn.execute("SELECT count(*) FROM demands_demand").fetchone()[0]

    def received_at(self) -> list[datetime]:
        return [row[0] for row in self._conn.execute("SELECT received_at FROM demands_demand ORDER BY received_at")]

    def size_bytes(self) -> int:
        return self._conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]

    def received_at_by_partition(self) -> list[tuple[datetime, int]]:
        return self._conn.execute("SELECT received_at, kafka_partition FROM demands_demand").fetchall()

    def settle(self) -> dict:
        """A CHECKPOINT before a contender starts, so none inherits another's dirty pages or gets a
        WAL-triggered checkpoint in the middle of its run (max_wal_size is 1 GB and a run writes a
        few hundred MB). Returns where WAL and the checkpoint counters stand, for `since`."""
        try:
            self._conn.execute("CHECKPOINT")
        except psycopg.Error as exc:  # a role without pg_checkpoint: run anyway, and say so
            print(f"warning: CHECKPOINT refused ({exc}); runs may differ by when checkpoints fall", flush=True)
        return self._wal_state()

    def since(self, before: dict) -> dict:
        """WAL written and checkpoints started since `settle()`."""
        after = self._wal_state()
        return {"wal_mb": round((after["lsn"] - before["lsn"]) / 2**20, 1),
                "checkpoints_during_run": after["checkpoints"] - before["checkpoints"]}

    def _wal_state(self) -> dict:
        lsn, checkpoints = self._conn.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint, checkpoints_req + checkpoints_timed "
            "FROM pg_stat_bgwriter").fetchone()
        return {"lsn": lsn, "checkpoints": checkpoints}

    def drop(self) -> None:
        self._conn.close()
        self.template._execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self.template.live.discard(self.name)


class SqliteTemplate:
    def __init__(self, directory: Path, tag: str):
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"umsg_bench_{tag}_template.sqlite3"
        self.path.unlink(missing_ok=True)
        self.url = f"sqlite:///{self.path}"
        self.clones = 0

    def fresh(self, label: str) -> SqliteDatabase:
        self.clones += 1
        path = self.directory / f"{self.path.stem.removesuffix('_template')}_{self.clones}_{label}.sqlite3"
        # The template was checkpointed by its last connection closing; copy the main file only.
        shutil.copyfile(self.path, path)
        return SqliteDatabase(path)

    def drop(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)


class SqliteDatabase(BenchDatabase):
    kind = "sqlite"

    def __init__(self, path: Path):
        self.path = path
        self.url = f"sqlite:///{path}"
        self._conn = sqlite3.connect(path, timeout=30, isolation_level=None)

    def count(self) -> int:
        return self._conn.execute("SELECT count(*) FROM demands_demand").fetchone()[0]

    def received_at(self) -> list[datetime]:
        return [datetime.fromisoformat(row[0]) for row in self._conn.execute(
            "SELECT received_at FROM demands_demand ORDER BY received_at")]

    def size_bytes(self) -> int:
        return sum(Path(f"{self.path}{s}").stat().st_size for s in ("", "-wal") if Path(f"{self.path}{s}").exists())

    def drop(self) -> None:
        self._conn.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)


_REBALANCE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[,.]\d{3}) .*partitions (?:assigned|revoked|lost)\b.*consuming (.*)$")


def ownership(log_path: Path) -> list[tuple[datetime, set[int]]]:
    """(when, partitions held after it) for each rebalance a consumer logged (demands.pipeline.loop's
    'partitions assigned: …; consuming topic[0,1,2]' lines; the floor prints the same)."""
    events = []
    for line in log_path.read_text(errors="replace").splitlines():
        match = _REBALANCE.match(line)
        if match:
            when = datetime.strptime(match[1].replace(".", ","), "%Y-%m-%d %H:%M:%S,%f").astimezone()  # local time
            held = {int(n) for part in re.findall(r"\[([\d,]*)\]", match[2]) for n in part.split(",") if n}
            events.append((when, held))
    return events


def all_consuming(logs: list[Path], rows: list[tuple[datetime, int]], *, min_seconds: float = 2.0) -> dict:
    """Rows/s while every process of a multi-process run held its final partitions.

    With the broker's group.initial.rebalance.delay.ms at 0 (services/kafka.sh), the first consumer
    to join gets every partition and works alone until the second one's join is rebalanced in,
    several seconds later; the second then works alone at the end. On a 15-second run that decides
    the overall rate more than the processes do. This window starts at the last rebalance and ends
    when the first process has drained its partitions. `rows` are (received_at, partition)."""
    histories = [ownership(path) for path in logs]
    for history in histories:  # closing revokes everything: that is the end, not a rebalance
        while history and not history[-1][1]:
            history.pop()
    if not rows or any(not history for history in histories) or any(not history[-1][1] for history in histories):
        return {"rate_all_consuming": None}
    start = max(when for history in histories for when, _ in history)
    ends = []
    for history in histories:
        mine = [at for at, partition in rows if partition in history[-1][1]]
        ends.append(max(mine) if mine else start)
    end = min(ends)
    seconds = (end - start).total_seconds()
    if seconds < min_seconds:
        return {"rate_all_consuming": None, "all_consuming_seconds": round(seconds, 2)}
    stored = sum(1 for at, _ in rows if start <= at <= end)
    return {"rate_all_consuming": round(stored / seconds, 1), "all_consuming_seconds": round(seconds, 2)}


def throughput(stamps: list[datetime]) -> dict:
    """Rows/s from the stored rows' `received_at` (set once per batch, before it is persisted).

    From the first batch's start to the last batch's start, every batch but the last was stored,
    so the rate excludes process start-up, group join and shutdown. `mid` is the rate between the
    10th and 90th percentile rows: the steady state, without warm-up or the ragged end.
    """
    n = len(stamps)
    if n < 2:
        return {"rows": n, "seconds": None, "rate": None, "rate_mid": None}
    first, last = stamps[0], stamps[-1]
    span = (last - first).total_seconds()
    in_last = n - next(i for i in range(n - 1, -1, -1) if stamps[i] != last) - 1
    rate = (n - in_last) / span if span > 0 else None
    lo, hi = stamps[n // 10], stamps[(n * 9) // 10]
    mid_span = (hi - lo).total_seconds()
    rate_mid = ((n * 9) // 10 - n // 10) / mid_span if mid_span > 0 else None
    return {"rows": n, "seconds": round(span, 3), "rate": rate and round(rate, 1), "rate_mid": rate_mid and round(rate_mid, 1)}


# -- child processes -------------------------------------------------------------------------------
@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    log_path: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stats(self) -> dict:
        """Peak and current RSS (MB) and CPU seconds, read from /proc while the process lives."""
        out = {}
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith(("VmHWM:", "VmRSS:")):
                    key = "peak_rss_mb" if line.startswith("VmHWM") else "rss_mb"
                    out[key] = round(int(line.split()[1]) / 1024, 1)
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
            out["cpu_s"] = round((int(fields[11]) + int(fields[12])) / CLOCK_TICKS, 2)
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return {}
        return out if "peak_rss_mb" in out else {}  # a zombie has no memory lines: keep the last figures

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def start(name: str, cmd: list[str], *, env: dict, log_dir: Path) -> Child:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with open(log_path, "wb") as out:
        # Its own session, so stopping it never signals us; we signal its pid only.
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return Child(name, proc, log_path)


def stop(child: Child, *, grace: float = 30.0) -> int | None:
    """SIGTERM (the consumers finish their batch and commit), then SIGKILL after `grace` seconds."""
    if child.proc.poll() is None:
        try:
            child.proc.send_signal(signal.SIGTERM)
            return child.proc.wait(grace)
        except subprocess.TimeoutExpired:
            log(f"  {child.name} ignored SIGTERM for {grace:.0f}s: killing it")
            child.proc.kill()
            return child.proc.wait(10)
    return child.proc.returncode
