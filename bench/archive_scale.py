"""The hot path as history grows (issue 17, archiving): 1,000,000 open and 5,000,000 archived
demands, list page and API p50/p95 server time (target p95 ≤ 50 ms). Not a test: it prints
figures and writes bench/results/archive-*.json.

    .venv/bin/python -m bench.archive_scale [--open 1000000] [--archived 5000000] [--requests 20]
                                            [--groups N] [--database postgres|sqlite] [--keep]
                                            [--reuse DATABASE]

Rows are bulk-loaded with COPY on PostgreSQL (executemany on SQLite) into a fresh database, with
a progress line per chunk; the secondary indexes are dropped for the load and rebuilt after it
(as a restore would), then ANALYZE. The archived demands are the oldest (lowest ids), closed
(resolved / rejected / duplicate) and archived; the open ones are the newest, in every status
(closed ones not archived yet too). Demand g belongs to group g mod G + 1 (G: one group per 50
demands unless --groups), so every group spans archived and open history, and the last 24 hours
have hourly counts (sparklines). Requests go through Django's test client in this process,
without setup_test_environment's instrumented rendering; the list names `view=all` or
`view=groups`, and a full page's count (fetched after the page, /demands/count/) is timed apart.
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
    ("list newest", "/demands/?view=all"),
    ("list status=new", "/demands/?view=all&status=new"),
    # Closed but not archived yet: few among millions of archived resolved rows.
    ("list status=resolved", "/demands/?view=all&status=resolved"),
    ("list type+source", "/demands/?view=all&type=log_exception&source=payment-service"),
    ("list sort=priority", "/demands/?view=all&sort=priority"),
    ("list page 3 (cursor)", None),
    ("list search 支付", "/demands/?view=all&search=支付"),
    ("list archived=only", "/demands/?view=all&archived=only"),
    ("list archived=include", "/demands/?view=all&archived=include"),
    # The default list once demands repeat: one row per group (demands/groups/).
    ("groups newest", "/demands/?view=groups"),
    ("groups status=new", "/demands/?view=groups&status=new"),
    ("groups sort=count", "/demands/?view=groups&group_sort=count"),
    ("groups sort=priority", "/demands/?view=groups&group_sort=priority"),
    ("groups sort=first_seen", "/demands/?view=groups&group_sort=first_seen"),
    ("groups page 3", "/demands/?view=groups&gpage=3"),
    # A full first page fetches its capped count after loading (GET /demands/count/): timed apart.
    ("count newest", "/demands/count/?view=all"),
    ("count type+source", "/demands/count/?view=all&type=log_exception&source=payment-service"),
    ("count groups status=new", "/demands/count/?view=groups&status=new"),
    ("api newest", "/api/demands/"),
    ("api status=resolved", "/api/demands/?status=resolved"),
    ("api priority=urgent", "/api/demands/?priority=urgent"),
    ("api archived=only", "/api/demands/?archived=only"),
]


def psql(database: str, sql: str) -> None:
    subprocess.run(["psql", f"{PG_SERVER}/{database}", "-qAtc", sql], check=True)


def rows(start: int, end: int, *, archived: bool, now: datetime, total: int, groups: int):
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
            "group_id": (g % groups) + 1,
        }


def load_groups(args, connection, *, now: datetime, total: int) -> None:
    """The groups the demands belong to (demand g is in group g mod G + 1: every group spans the
    whole history, archived and open), and their hourly counts of the last 24 hours (sparklines)."""
    from django.db import connection as django_connection

    from demands.models import DemandGroup
    from demands.pipeline.grouping import hour_of

    def received(g: int) -> datetime:
        return now - timedelta(seconds=(total - g) * 5)

    count = args.groups
    table = DemandGroup._meta.db_table
    columns = ["fingerprint", "type", "source", "title", "count", "first_seen", "last_seen", "status", "priority"]
    values = []
    for i in range(1, count + 1):
        first = i - 1 if i > 1 else count
        last = first + ((total - first) // count) * count
        values.append([f"fp{i}", TYPES[i % 5], SOURCES[i % 7], f"{CONTENTS[i % 8]} #{i}"[:200], (last - first) // count + 1,
                       received(first), received(last), "resolved" if i % 9 == 0 else ("triaged" if i % 4 == 0 else "new"),
                       PRIORITIES[i % 6] if i % 3 == 0 else ""])
    hours: dict[tuple[int, datetime], int] = {}
    for g in range(max(1, total - 24 * 720), total + 1):  # 720 demands an hour (one per 5 s)
        key = ((g % count) + 1, hour_of(received(g)))
        hours[key] = hours.get(key, 0) + 1
    cursor = connection.cursor()
    if args.database == "postgres":
        with cursor.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in values:
                copy.write_row(row)
        with cursor.cursor.copy("COPY demands_grouphour (group_id, hour, count) FROM STDIN") as copy:
            for (group_id, hour), n in hours.items():
                copy.write_row([group_id, hour, n])
    else:
        adapt = django_connection.ops.adapt_datetimefield_value
        cursor.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})",
                           [[adapt(v) if isinstance(v, datetime) else v for v in row] for row in values])
        cursor.executemany("INSERT INTO demands_grouphour (group_id, hour, count) VALUES (%s, %s, %s)",
                           [[group_id, adapt(hour), n] for (group_id, hour), n in hours.items()])
    connection.commit()
    print(f"  loaded {count:,} groups and {len(hours):,} hourly counts", flush=True)


def load(args, connection) -> float:
    from django.db import connection as django_connection

    from demands.models import Demand

    now = datetime.now(dt_timezone.utc)
    fields = [f for f in Demand._meta.concrete_fields if not f.primary_key]
    sample = next(rows(1, 1, archived=True, now=now, total=1, groups=1))
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
    load_groups(args, connection, now=now, total=total)
    done = 0
    for archived, count, offset in ((True, args.archived, 0), (False, args.open, args.archived)):
        for start in range(offset + 1, offset + count + 1, CHUNK):
            end = min(start + CHUNK - 1, offset + count)
            batch = ([row.get(column, defaults.get(column)) for column in columns]
                     for row in rows(start, end, archived=archived, now=now, total=total, groups=args.groups))
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
    parser.add_argument("--groups", type=int, default=0, help="demand groups (default: one per 50 demands)")
    parser.add_argument("--requests", type=int, default=20, help="timed requests per query (after 3 warm-ups)")
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--reuse", default="", help="time a database an earlier --keep run left (PostgreSQL; no load)")
    args = parser.parse_args()
    args.groups = args.groups or max(1, (args.open + args.archived) // 50)

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
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    from demands import selectors

    # No setup_test_environment(): its instrumented rendering (a signal and a context copy per
    # template) is not what a server pays. The page cursor comes from the selector instead.
    admin = get_user_model().objects.filter(username="bench").first() or get_user_model().objects.create_superuser(
        username="bench", password=None)
    client = Client()
    client.force_login(admin)
    no_filters = selectors.DemandFilters.from_params({})
    cursor = selectors.demand_page(filters=no_filters, before=None, limit=settings.DEMANDS_PAGE_SIZE).next_cursor
    cursor = selectors.demand_page(filters=no_filters, before=cursor, limit=settings.DEMANDS_PAGE_SIZE).next_cursor
    queries = [(name, url or f"/demands/?view=all&before={cursor}") for name, url in QUERIES]
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
    """p95 of fetching the page's rows alone (selectors.demand_page, or group_page): the part that depends on how
    many rows the tables hold, without routing and template rendering (which a loaded CPU inflates);
    and on PostgreSQL the p95 of the server's own execution time of those queries (EXPLAIN ANALYZE)."""
    from urllib.parse import parse_qsl, urlsplit

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from demands import selectors

    from demands.groups import selectors as group_selectors

    params = dict(parse_qsl(urlsplit(url).query))
    filters = selectors.DemandFilters.from_params(params)

    def fetch():
        if params.get("view") == "groups":
            group_selectors.group_page(filters=filters, sort=params.get("group_sort", ""), page=int(params.get("gpage", 1)))
        else:
            selectors.demand_page(filters=filters, before=params.get("before"), limit=50)

    times = []
    for _ in range(requests):
        t0 = time.perf_counter()
        fetch()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    rows_p95 = times[max(0, int(round(0.95 * len(times))) - 1)]
    if connection.vendor != "postgresql":
        return rows_p95, None
    with CaptureQueriesContext(connection) as captured:
        fetch()
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
