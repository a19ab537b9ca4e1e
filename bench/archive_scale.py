"""The hot path as history grows (issue 17, archiving): 1,000,000 open and 5,000,000 archived
demands, list page and API p50/p95 server time (target p95 ≤ 50 ms). Not a test: it prints
figures and writes bench/results/archive-*.json.

    .venv/bin/python -m bench.archive_scale [--open 1000000] [--archived 5000000] [--requests 20]
                                            [--database postgres|sqlite] [--keep]

Rows are bulk-loaded with COPY on PostgreSQL (executemany on SQLite) into a fresh database, with
a progress line per chunk; the secondary indexes are dropped for the load and rebuilt after it
(as a restore would), then ANALYZE. The archived demands are the oldest (lowest ids), closed
(resolved / rejected / duplicate) and archived; the open ones are the newest, in every status
(closed ones not archived yet too). Requests go through Django's test client in this process.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone as dt_timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_SERVER = "postgres://umsg@127.0.0.1:5433"
CHUNK = 200_000

SOURCES = ["web_app", "ios_app", "android_app", "order-service", "payment-service", "api-gateway", "crm"]
TYPES = ["user_feedback", "user_feedback", "log_exception", "api_anomaly", "feature_request"]
CONTENTS = ["页面加载太慢,请优化。", "支付完成后订单状态一直显示待支付", "TimeoutError: upstream payment gateway did not answer",
            "The checkout button does nothing on Safari", "希望支持按部门导出报表为 Excel", "5xx rate on POST /api/payments reached 7%",
            "Redis 连接池耗尽:acquire timeout", "KeyError: user_id in auth/session.py"]
PRIORITIES = ["normal", "normal", "normal", "high", "low", "urgent"]
OPEN_STATUSES = ["new", "new", "triaged", "in_progress", "resolved", "rejected"]
CLOSED = ["resolved", "resolved", "resolved", "rejected", "duplicate"]

QUERIES = [
    ("list newest", "/demands/"),
    ("list status=new", "/demands/?status=new"),
    # Closed but not archived yet: few among millions of archived resolved rows.
    ("list status=resolved", "/demands/?status=resolved"),
    ("list type+source", "/demands/?type=log_exception&source=payment-service"),
    ("list sort=priority", "/demands/?sort=priority"),
    ("list page 3 (cursor)", None),
    ("list search 支付", "/demands/?search=支付"),
    ("list archived=only", "/demands/?archived=only"),
    ("list archived=include", "/demands/?archived=include"),
    ("api newest", "/api/demands/"),
    ("api status=resolved", "/api/demands/?status=resolved"),
    ("api priority=urgent", "/api/demands/?priority=urgent"),
    ("api archived=only", "/api/demands/?archived=only"),
]


def psql(database: str, sql: str) -> None:
    subprocess.run(["psql", f"{PG_SERVER}/{database}", "-qAtc", sql], check=True)


def rows(start: int, end: int, *, archived: bool, now: datetime, total: int):
    """Demand rows start..end (ids in insertion order), as {column: value} without defaults."""
    rng = random.Random(start)
    for g in range(start, end + 1):
        age = timedelta(seconds=(total - g) * 5)  # lower ids are older: ~1 demand per 5 s of history
        received = now - age
        status = CLOSED[g % 5] if archived else OPEN_STATUSES[g % 6]
        closed = status in ("resolved", "rejected", "duplicate")
        yield {
            "source": SOURCES[g % 7], "message_id": f"b{g}", "type": TYPES[g % 5],
            "content": f"{CONTENTS[(g // 7) % 8]} #{g}", "occurred_at": received, "priority": PRIORITIES[rng.randrange(6)],
            "status": status, "tags": "[]", "extra": "{}", "rule_changes": "[]", "kafka_topic": "demand-topic",
            "kafka_partition": g % 6, "kafka_offset": g, "received_at": received, "category": "", "version": 1 if closed else 0,
            "updated_at": received + timedelta(hours=1) if closed else received,
            "resolved_at": received + timedelta(hours=1) if closed else None,
            "archived_at": received + timedelta(days=31) if archived else None,
        }


def load(args, connection) -> float:
    from django.db import connection as django_connection

    from demands.models import Demand

    now = datetime.now(dt_timezone.utc)
    fields = [f for f in Demand._meta.concrete_fields if not f.primary_key]
    sample = next(rows(1, 1, archived=True, now=now, total=1))
    columns = [f.column for f in fields]
    defaults = {f.column: f.get_db_prep_save(f.get_default(), django_connection) for f in fields if f.column not in sample}
    total = args.open + args.archived
    table = Demand._meta.db_table
    started = time.monotonic()
    cursor = connection.cursor()
    indexes = []
    if args.database == "postgres":  # build the indexes once at the end, not row by row
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s AND indexname NOT LIKE %s",
                       [table, "%pkey"])
        indexes = cursor.fetchall()
        for name, _definition in indexes:
            constraint = "demand_unique_source_message_id"
            cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT {constraint}" if name == constraint else f"DROP INDEX {name}")
    done = 0
    for archived, count, offset in ((True, args.archived, 0), (False, args.open, args.archived)):
        for start in range(offset + 1, offset + count + 1, CHUNK):
            end = min(start + CHUNK - 1, offset + count)
            batch = ([row.get(column, defaults.get(column)) for column in columns]
                     for row in rows(start, end, archived=archived, now=now, total=total))
            if args.database == "postgres":
                with cursor.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                    for values in batch:
                        copy.write_row(values)
            else:
                adapt = django_connection.ops.adapt_datetimefield_value
                cursor.executemany(
                    f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})",
                    ([adapt(v) if isinstance(v, datetime) else v for v in values] for values in batch),
                )
            connection.commit()
            done += end - start + 1
            print(f"  loaded {done:,}/{total:,} rows ({'archived' if archived else 'open'}; {time.monotonic() - started:.0f} s)", flush=True)
    for name, definition in indexes:
        t0 = time.monotonic()
        if name == "demand_unique_source_message_id":
            cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} UNIQUE (source, message_id)")
        else:
            cursor.execute(definition)
        connection.commit()
        print(f"  index {name} rebuilt ({time.monotonic() - t0:.0f} s)", flush=True)
    cursor.execute(f"ANALYZE {table}")
    connection.commit()
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--open", type=int, default=1_000_000)
    parser.add_argument("--archived", type=int, default=5_000_000)
    parser.add_argument("--requests", type=int, default=20, help="timed requests per query (after 3 warm-ups)")
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--reuse", default="", help="time a database an earlier --keep run left (PostgreSQL; no load)")
    args = parser.parse_args()

    database = args.reuse or f"umsg_bench_archive_{os.getpid()}"
    sqlite_dir = None
    if args.database == "postgres":
        if not args.reuse:
            psql("postgres", f"CREATE DATABASE {database}")
        os.environ["DATABASE_URL"] = f"{PG_SERVER}/{database}"
    else:
        sqlite_dir = tempfile.mkdtemp(prefix="umsg-bench-archive-")
        os.environ["DATABASE_URL"] = f"sqlite:///{sqlite_dir}/bench.sqlite3"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "unified_msg_site.settings")
    os.environ["DJANGO_DEBUG"] = "0"
    os.environ.setdefault("DJANGO_SECRET_KEY", __import__("secrets").token_urlsafe(50))
    os.environ["DJANGO_SECURE_SSL_REDIRECT"] = "0"
    try:
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command
        from django.db import connection

        settings.ALLOWED_HOSTS = ["testserver"]
        call_command("migrate", verbosity=0)
        seconds = 0.0
        if not args.reuse:
            connection.ensure_connection()
            connection.set_autocommit(False)
            seconds = load(args, connection)
            connection.set_autocommit(True)
            print(f"loaded in {seconds:.0f} s (database {database})", flush=True)
        run(args, seconds)
    finally:
        from django.db import connections

        connections.close_all()
        if args.database == "postgres" and not (args.keep or args.reuse):
            psql("postgres", f"DROP DATABASE IF EXISTS {database}")
        elif sqlite_dir and not args.keep:
            import shutil

            shutil.rmtree(sqlite_dir, ignore_errors=True)


def run(args, load_seconds: float) -> None:
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.test.utils import setup_test_environment

    setup_test_environment()  # response.context, to follow the page cursor
    admin = get_user_model().objects.filter(username="bench").first() or get_user_model().objects.create_superuser(
        username="bench", password=None)
    client = Client()
    client.force_login(admin)
    cursor = client.get("/demands/").context["page"].next_cursor
    cursor = client.get(f"/demands/?before={cursor}").context["page"].next_cursor
    queries = [(name, url or f"/demands/?before={cursor}") for name, url in QUERIES]
    results = []
    print(f"\n{'query':24} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'rows p95':>9} {'SQL p95':>8}   "
          f"(target p95 ≤ 50 ms; {args.open:,} open + {args.archived:,} archived, {args.database})")
    for name, url in queries:
        for _ in range(3):
            assert client.get(url).status_code == 200, url
        times = []
        for _ in range(args.requests):
            t0 = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200, url
        times.sort()
        p50 = statistics.median(times)
        p95 = times[max(0, int(round(0.95 * len(times))) - 1)]
        rows_p95, sql_p95 = _rows_p95(url, args.requests)
        results.append({"query": name, "url": url, "p50_ms": round(p50, 1), "p95_ms": round(p95, 1), "max_ms": round(times[-1], 1),
                        "rows_p95_ms": round(rows_p95, 1), "sql_p95_ms": round(sql_p95, 2) if sql_p95 is not None else None})
        sql_text = f"{sql_p95:8.2f}" if sql_p95 is not None else f"{'-':>8}"
        print(f"{name:24} {p50:8.1f} {p95:8.1f} {times[-1]:8.1f} {rows_p95:9.1f} {sql_text}", flush=True)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"archive-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"open": args.open, "archived": args.archived, "database": args.database,
                                "requests": args.requests, "results": results, "load_seconds": round(load_seconds),
                                "load_average": os.getloadavg()}, indent=1))
    print(f"wrote {path}")


def _rows_p95(url: str, requests: int) -> tuple[float, float | None]:
    """p95 of fetching the page's rows alone (selectors.demand_page): the part that depends on how
    many rows the tables hold, without routing and template rendering (which a loaded CPU inflates);
    and on PostgreSQL the p95 of the server's own execution time of those queries (EXPLAIN ANALYZE)."""
    from urllib.parse import parse_qsl, urlsplit

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from demands import selectors

    params = dict(parse_qsl(urlsplit(url).query))
    filters = selectors.DemandFilters.from_params(params)
    times = []
    for _ in range(requests):
        t0 = time.perf_counter()
        selectors.demand_page(filters=filters, before=params.get("before"), limit=50)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    rows_p95 = times[max(0, int(round(0.95 * len(times))) - 1)]
    if connection.vendor != "postgresql":
        return rows_p95, None
    with CaptureQueriesContext(connection) as captured:
        selectors.demand_page(filters=filters, before=params.get("before"), limit=50)
    executions = []
    with connection.cursor() as cursor:
        for _ in range(requests):
            total = 0.0
            for query in captured.captured_queries:
                cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + query["sql"])
                total += cursor.fetchone()[0][0]["Execution Time"]
            executions.append(total)
    executions.sort()
    return rows_p95, executions[max(0, int(round(0.95 * len(executions))) - 1)]


if __name__ == "__main__":
    main()
