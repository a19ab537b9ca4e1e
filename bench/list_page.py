"""List page and API at scale (issue 6 §3): 1,000,000 demands in PostgreSQL, common filters and
search, p50/p95 server time. Not a test: it prints figures and writes bench/results/list-*.json.

    .venv/bin/python -m bench.list_page [--rows 1000000] [--requests 30] [--keep]

The rows are generated inside PostgreSQL (INSERT … SELECT generate_series) in chunks, with a
progress line per chunk: realistic types, sources, statuses, priorities and Chinese/English
content. Requests go through Django's test client in this process, so the time is the server's
(routing, queries, template rendering), without a network.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_SERVER = "postgres://umsg@127.0.0.1:5433"

CHUNK = 100_000
FILL = """
INSERT INTO demands_demand (source, message_id, type, content, occurred_at, priority, status, tags, extra,
    kafka_topic, kafka_partition, kafka_offset, received_at, category, version, updated_at, rule_changes)
SELECT (ARRAY['web_app','ios_app','android_app','order-service','payment-service','api-gateway','crm'])[1 + g %% 7],
       'b' || g,
       (ARRAY['user_feedback','user_feedback','log_exception','api_anomaly','feature_request'])[1 + g %% 5],
       (ARRAY['页面加载太慢,请优化。','支付完成后订单状态一直显示待支付','TimeoutError: upstream payment gateway did not answer',
              'The checkout button does nothing on Safari','希望支持按部门导出报表为 Excel','5xx rate on POST /api/payments reached 7%%',
              'Redis 连接池耗尽:acquire timeout','KeyError: user_id in auth/session.py'])[1 + (g / 7) %% 8] || ' #' || g,
       now() - (g || ' seconds')::interval,
       (ARRAY['normal','normal','normal','high','low','urgent'])[1 + g %% 6],
       (ARRAY['new','new','triaged','in_progress','resolved','resolved','rejected'])[1 + (g / 3) %% 7],
       '[]'::jsonb, '{}'::jsonb, 'demand-topic', g %% 6, g, now() - (g || ' seconds')::interval, '', 0, now(),
       CASE WHEN g %% 3 = 0 THEN '[{"rule_id": null, "rule": "Timeouts", "field": "tags", "old": "", "new": "performance"}]'::jsonb ELSE '[]'::jsonb END
FROM generate_series(%s, %s) AS g
"""

QUERIES = [
    ("list newest", "/demands/"),
    ("list status=new", "/demands/?status=new"),
    ("list type+source", "/demands/?type=log_exception&source=payment-service"),
    ("list priority sort", "/demands/?sort=priority"),
    ("list page 3 (cursor)", None),  # filled in with a real cursor
    ("list search 支付", "/demands/?search=支付"),
    ("list search timeout", "/demands/?search=timeout"),
    # Words no generated row contains: no page fills early, so only an index keeps these short.
    ("list search rare", "/demands/?search=no-such-text"),
    ("list search rare 中文", "/demands/?search=没有这个内容"),
    ("api newest", "/api/demands/"),
    ("api status=new", "/api/demands/?status=new"),
    ("api search 报表", "/api/demands/?search=报表"),
    ("api search rare", "/api/demands/?search=no-such-text"),
]


def psql(database: str, sql: str) -> None:
    subprocess.run(["psql", f"{PG_SERVER}/{database}", "-qAtc", sql], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=30, help="timed requests per query (after 3 warm-ups)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()

    database = f"umsg_bench_list_{os.getpid()}"
    subprocess.run([str(ROOT / "services/up.sh"), "postgres"], check=True)
    psql("postgres", f"CREATE DATABASE {database}")
    os.environ["DATABASE_URL"] = f"{PG_SERVER}/{database}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "unified_msg_site.settings")
    os.environ["DJANGO_DEBUG"] = "0"
    os.environ.setdefault("DJANGO_SECRET_KEY", __import__("secrets").token_urlsafe(50))  # DEBUG off refuses the built-in key
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
        started = time.monotonic()
        with connection.cursor() as cursor:
            for start in range(1, args.rows + 1, CHUNK):
                end = min(start + CHUNK - 1, args.rows)
                cursor.execute(FILL, [start, end])
                print(f"  generated {end:,}/{args.rows:,} rows ({time.monotonic() - started:.0f} s)", flush=True)
            cursor.execute("ANALYZE demands_demand")
        run(args, database, started)
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            psql("postgres", f"DROP DATABASE IF EXISTS {database}")


def run(args, database: str, started: float) -> None:
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.test.utils import setup_test_environment

    setup_test_environment()  # response.context, to follow the page cursor

    admin = get_user_model().objects.create_superuser(username="bench", password=None)
    client = Client()
    client.force_login(admin)
    first = client.get("/demands/")
    cursor = first.context["page"].next_cursor
    second = client.get(f"/demands/?before={cursor}")
    cursor = second.context["page"].next_cursor
    queries = [(name, url or f"/demands/?before={cursor}") for name, url in QUERIES]

    results = []
    print(f"\n{'query':24} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}   (target p95 ≤ 50 ms; {args.rows:,} rows)")
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
        results.append({"query": name, "url": url, "p50_ms": round(p50, 1), "p95_ms": round(p95, 1), "max_ms": round(times[-1], 1)})
        print(f"{name:24} {p50:8.1f} {p95:8.1f} {times[-1]:8.1f}", flush=True)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"list-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"rows": args.rows, "requests": args.requests, "results": results,
                                "load_average": os.getloadavg(), "seconds": round(time.monotonic() - started)}, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
