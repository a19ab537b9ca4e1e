"""Where a consumer's wall time goes: py-spy's collapsed stacks (`--format raw --idle`) → categories.

Every sample of the consumer's Python thread (idle ones too, so waiting on Kafka or the database
counts) is put in the first category whose test matches its stack. The raw file itself loads in
https://www.speedscope.app/ for a flame graph.

    python -m bench.pyspy_summary bench/results/profile-….txt
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path


def _has(*needles: str):
    return lambda stack, leaf: all(n in stack for n in needles)


def _leaf(*needles: str):
    return lambda stack, leaf: all(n in leaf for n in needles)


def _db_wait(stack: str, leaf: str) -> bool:
    # psycopg waits for the server in psycopg/waiting.py (or wait_c, seen as the caller's line).
    return "waiting.py" in stack or "wait (psycopg" in stack or "_wait_" in leaf or "wait_c" in leaf


# (category, test) — first match wins, so specific tests come first.
RULES = [
    ("broadcast (render + group_send)", _has("broadcast_demands_created")),
    ("dead-letter produce", _has("_dead_letter (demands/kafka.py")),
    ("Kafka offset commit", _has("_commit (demands/kafka.py")),
    ("transaction commit (DB round-trip)", lambda s, l: ("transaction.py" in s and "__exit__" in s and "persist" in s)),
    # ours: demands.ingest.persist_batch
    ("parse: JSON decode", lambda s, l: ("parse_demand" in s or "parse_fast" in s) and ("json/decoder.py" in s or "loads (json" in s)),
    ("parse: orjson decode", lambda s, l: "parse_fast" in l and "demand_from_dict" not in s and "parse_demand" not in s),
    ("parse: validation (schema)", lambda s, l: "parse_demand" in s or "demand_from_dict" in s),
    ("build Demand objects (Model.__init__)", _has("build_demand (demands/ingest.py")),
    ("existing-identity SELECT: DB wait", lambda s, l: "_existing_identities" in s and _db_wait(s, l)),
    ("existing-identity SELECT: ORM/driver", _has("_existing_identities")),
    ("bulk_create: DB wait", lambda s, l: "bulk_create" in s and "persist_batch (" in s and _db_wait(s, l)),
    ("bulk_create: psycopg adapt/send", lambda s, l: "bulk_create" in s and "persist_batch (" in s and "psycopg/" in s),
    ("bulk_create: Django (values, SQL compile)", lambda s, l: "bulk_create" in s and "persist_batch (" in s),
    # prototype: bench.prototype_persist.persist_batch_fast
    ("fast: COPY rows into staging", lambda s, l: "_insert_postgresql" in s and ("copy" in s.lower()) and "write_row" in s),
    ("fast: COPY end / staging setup", lambda s, l: "_insert_postgresql" in s and ("copy.py" in s or "_copy" in s)),
    ("fast: INSERT…ON CONFLICT RETURNING (DB)", _has("_insert_postgresql")),
    ("fast: multi-row INSERT (SQLite)", _has("_insert_multirow")),
    ("fast: build row tuples", _has("persist_batch_fast")),
    ("persist: other", lambda s, l: "persist_batch" in s),
    ("Kafka message → IncomingMessage", _has("_record_from")),
    ("connection health check", _has("close_old_connections")),
    ("Kafka consume() (incl. waiting for messages)", lambda s, l: "run (demands/kafka.py" in l or "_valid (demands/kafka.py" in l),
]


def summarize(path: Path) -> list[dict]:
    counts: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        leaf = stack.rsplit(";", 1)[-1]
        category = next((name for name, test in RULES if test(stack, leaf)), "other (start-up, idle, shutdown)")
        counts[category] += samples
        total += samples
    return [
        {"category": name, "samples": n, "share": round(n / total, 4) if total else 0.0}
        for name, n in counts.most_common()
    ]


def format_summary(rows: list[dict], *, rate: float | None = None) -> str:
    """A table; with the run's demands/s, each category's cost in µs per demand."""
    lines = [f"  {'where the time goes':48} {'share':>7} {'µs/demand':>10}"]
    for row in rows:
        cost = f"{row['share'] * 1e6 / rate:10.1f}" if rate else f"{'':>10}"
        lines.append(f"  {row['category']:48} {row['share'] * 100:6.1f}% {cost}")
    return "\n".join(lines)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(arg)
        print(format_summary(summarize(Path(arg))))
