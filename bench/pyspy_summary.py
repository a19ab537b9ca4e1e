"""Where a consumer's wall time goes: py-spy's collapsed stacks (`--format raw --idle`) → categories.

Every sample of the consumer's Python thread (idle ones too, so waiting on Kafka or the database
counts) is put in the first category whose test matches its stack. The raw file itself loads in
https://www.speedscope.app/ for a flame graph.

    python -m bench.pyspy_summary bench/results/profile-….txt
"""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent


def _frame_at(relative: str, function: str, needle: str) -> str:
    """py-spy's name for the line of `relative` that contains `needle`: 'function (path:line)'."""
    base = ROOT
    if not (ROOT / relative).exists():  # a library: relative to site-packages, as py-spy names it
        spec = importlib.util.find_spec(relative.split("/", 1)[0])
        base = Path(spec.origin).parent.parent if spec and spec.origin else ROOT
    try:
        for number, text in enumerate((base / relative).read_text().splitlines(), 1):
            if needle in text:
                return f"{function} ({relative}:{number})"
    except OSError:
        pass
    return "\0never"


# Every line of ConsumeLoop._read calls consume() (or is the function's own frame).
CONSUME_CALLS = ("ConsumeLoop._read (demands/pipeline/loop.py:",
                 _frame_at("bench/floor_consumer.py", "main", "consumer.consume("))
FLOOR_COMMIT = _frame_at("bench/floor_consumer.py", "main", "consumer.commit(")
SQLITE_EXECUTE = _frame_at("django/db/backends/sqlite3/base.py", "SQLiteCursorWrapper.execute", "return super().execute(query, params)")
ORJSON_CALL = _frame_at("bench/prototype_persist.py", "parse_fast", "data = _loads(raw)")


def _has(*needles: str):
    return lambda stack, leaf: all(n in stack for n in needles)


def _db_wait(stack: str, leaf: str) -> bool:
    # psycopg blocks on the socket in Connection.wait (the C wait function): the server's time.
    # SQLite runs inside sqlite3's execute(), seen as the line of Django's wrapper that calls it.
    return (leaf.startswith("Connection.wait (psycopg") or "waiting.py" in leaf
            or leaf.startswith(SQLITE_EXECUTE))


def _in_parse(stack: str) -> bool:
    return "parse_demand (" in stack or "parse_fast (" in stack or "rows_from (" in stack


# (category, test) — first match wins, so specific tests come first.
RULES = [
    ("broadcast: render rows (templates)", _has("broadcast_demands_created", "render_to_string")),
    ("broadcast: group_send (async_to_sync + channel layer)", _has("broadcast_demands_created")),
    ("broadcast: read created rows back (prototype)", lambda s, l: "run_consumer.py" in s and "persist (" in s
     and "persist_batch_fast" not in s),
    ("dead-letter produce", _has("(demands/pipeline/dead_letter.py:")),
    ("Kafka offset commit", lambda s, l: "(demands/pipeline/offsets.py:" in s or l.startswith(FLOOR_COMMIT)),
    ("DB transaction commit", lambda s, l: "Atomic.__exit__" in s or "Transaction.__exit__ (psycopg" in s),
    ("parse: json.loads (stdlib)", lambda s, l: _in_parse(s) and ("json/decoder.py" in s or "loads (json/" in s)),
    ("parse: orjson.loads", lambda s, l: l.startswith(ORJSON_CALL)),
    ("parse: validation (demands.schema)", lambda s, l: "parse_demand (" in s or "demand_from_dict (" in s),
    ("build demand rows (new_demand)", _has("new_demand (demands/pipeline/parse.py")),
    ("existing-identity SELECT: database", lambda s, l: "_existing_identities" in s and _db_wait(s, l)),
    ("existing-identity SELECT: ORM + driver", _has("_existing_identities")),
    ("bulk_create: database", lambda s, l: "bulk_create" in s and _db_wait(s, l)),
    ("bulk_create: psycopg adapting 500×17 params", lambda s, l: "bulk_create" in s and "psycopg/" in s),
    ("bulk_create: Django (prep values, SQL compile)", _has("bulk_create")),
    ("COPY rows into staging (write_row)", _has("write_row")),
    ("COPY end (server parses rows)", lambda s, l: "Copy.__exit__" in s or "Copy.finish" in s),
    ("INSERT…SELECT ON CONFLICT: server", lambda s, l: ("_insert_postgresql" in s or "PostgresWriter.write" in s)
     and "Cursor.execute" in s),
    ("multi-row INSERT (SQLite)", _has("_insert_multirow")),
    ("executemany INSERT (SQLite)", lambda s, l: l.startswith("SqliteWriter.write")),
    ("build row tuples", lambda s, l: "persist_batch_fast (" in s or "rows_from (" in s),
    ("persist: other", lambda s, l: "persist_batch" in s or "PostgresWriter" in s),
    ("Kafka Message → IncomingMessage", _has("record_from (demands/pipeline/parse.py")),
    ("connection health check", _has("close_old_connections")),
    ("Kafka consume() (incl. waiting for messages)",
     lambda s, l: l.startswith(CONSUME_CALLS) or "ConsumeLoop._valid (demands/pipeline/loop.py" in l),
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
