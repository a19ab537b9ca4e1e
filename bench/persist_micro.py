"""Persist paths in one process, without Kafka: what each hot-path change is worth on its own.

The same pre-built IncomingMessage batches go through each variant into the same fresh database
(emptied between variants, variants interleaved across repeats):

  ours           demands.ingest.persist_batch as it is
  ours+order_by  the same, with the existing-identity query's default ORDER BY -id removed
                 (SQLite then uses the unique index instead of scanning demand_source_id)
  ours+ssb       PostgreSQL only: psycopg server-side binding (OPTIONS server_side_binding=True)
  fast           bench/prototype_persist.py (COPY → staging → INSERT … ON CONFLICT RETURNING id)
  fast-stdlib    the same with json.loads instead of orjson
  fast×2000      the same with batches of 2,000

    python -m bench.persist_micro [--db postgres,sqlite] [--rows 30000] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import harness
from bench.harness import PYTHON, RESULTS, ROOT, log

VARIANTS = ["ours", "ours+order_by", "ours+ssb", "fast", "fast-stdlib", "fast×2000"]


def worker(args) -> None:
    """Runs inside Django (DATABASE_URL set by the parent); prints one JSON line per measurement."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "unified_msg_site.settings")
    import django

    django.setup()
    import random
    from datetime import datetime, timezone

    from django.db import connection

    from bench import prototype_persist
    from bench.workload import bench_demand, encode
    from demands import ingest
    from demands.models import Demand

    rng = random.Random(7)
    original_existing = ingest._existing_identities

    def existing_unordered(identities):
        by_source: dict[str, list[str]] = {}
        for source, message_id in identities:
            by_source.setdefault(source, []).append(message_id)
        found = set()
        for source, message_ids in by_source.items():
            found.update(Demand.objects.filter(source=source, message_id__in=message_ids).order_by()
                         .values_list("source", "message_id"))
        return found

    def records(run: str, size: int) -> list[list[ingest.IncomingMessage]]:
        out, batch = [], []
        for index in range(args.rows):
            key, value = encode(bench_demand(rng, index, run))
            batch.append(ingest.IncomingMessage("bench", index % 6, index, value, key, datetime.now(timezone.utc)))
            if len(batch) == size:
                out.append(batch)
                batch = []
        return out + ([batch] if batch else [])

    def reconnect(server_side_binding: bool) -> None:
        connection.close()
        connection.settings_dict.setdefault("OPTIONS", {})["server_side_binding"] = server_side_binding

    variants = [v for v in VARIANTS if v in args.variants.split(",")]
    if connection.vendor != "postgresql":
        variants = [v for v in variants if v != "ours+ssb"]
    for repeat in range(1, args.repeat + 1):
        for variant in variants:
            batches = records(f"m{repeat}{variants.index(variant)}", 2000 if variant == "fast×2000" else args.batch_size)
            with connection.cursor() as cursor:
                cursor.execute("DELETE FROM demands_demand")
            if connection.vendor == "postgresql":
                reconnect(variant == "ours+ssb")
            ingest._existing_identities = existing_unordered if variant == "ours+order_by" else original_existing
            prototype_persist._loads = json.loads if variant == "fast-stdlib" else prototype_persist.orjson.loads
            persist = prototype_persist.persist_batch_fast if variant.startswith("fast") else ingest.persist_batch
            started = time.perf_counter()
            cpu = time.process_time()
            for batch in batches:
                persist(batch)
            elapsed = time.perf_counter() - started
            stored = Demand.objects.count()
            print(json.dumps({"variant": variant, "repeat": repeat, "rows": stored, "seconds": round(elapsed, 3),
                              "rate": round(stored / elapsed, 1), "cpu_s": round(time.process_time() - cpu, 2)}), flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="postgres,sqlite")
    parser.add_argument("--rows", type=int, default=30_000, help="demands per variant and repeat")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--pg-server", default=os.environ.get("BENCH_PG_SERVER", "postgres://umsg@127.0.0.1:5433"))
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per database")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0

    stamp = time.strftime("%Y%m%d-%H%M%S")
    report: dict = {"benchmark": "persist_micro", "started": stamp, "args": vars(args), "runs": []}
    work_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"umsg-bench-micro-{os.getpid()}"
    for kind in [k.strip() for k in args.db.split(",") if k.strip()]:
        template = (harness.PostgresTemplate(args.pg_server, f"micro{os.getpid()}") if kind == "postgres"
                    else harness.SqliteTemplate(work_dir, f"micro{os.getpid()}"))
        try:
            harness.manage("migrate", "--noinput", "-v", "0", database_url=template.url)
            db = template.fresh("micro")
            log(f"{kind}: {args.rows:,} demands per variant, {args.repeat} repeats")
            cmd = [PYTHON, "-m", "bench.persist_micro", "--worker", "--rows", str(args.rows), "--batch-size",
                   str(args.batch_size), "--repeat", str(args.repeat), "--variants", args.variants]
            proc = subprocess.Popen(cmd, cwd=ROOT, env=harness.child_env(db.url), stdout=subprocess.PIPE, text=True)
            deadline = time.monotonic() + args.timeout
            try:
                for line in proc.stdout:
                    run = {"db": kind, **json.loads(line)}
                    report["runs"].append(run)
                    log(f"  {kind} {run['variant']:14} r{run['repeat']}: {run['rate']:>9,.0f} demands/s (CPU {run['cpu_s']} s)")
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{kind}: over {args.timeout}s")
            finally:
                if proc.poll() is None:
                    proc.terminate()
                proc.wait(30)
            db.drop()
        finally:
            template.drop()
    shutil.rmtree(work_dir, ignore_errors=True)
    # CPU per demand is the steadier figure when other work shares the machine; wall rate includes the database.
    print(f"\n{'db':9} {'variant':15} {'demands/s':>10} {'min–max':>17} {'× ours':>7} {'client CPU µs/demand':>21}")
    for kind in dict.fromkeys(r["db"] for r in report["runs"]):
        base = statistics.median(r["rate"] for r in report["runs"] if r["db"] == kind and r["variant"] == "ours")
        for variant in VARIANTS:
            runs = [r for r in report["runs"] if r["db"] == kind and r["variant"] == variant]
            if runs:
                rates = [r["rate"] for r in runs]
                cpu = [r["cpu_s"] / r["rows"] * 1e6 for r in runs if r["rows"]]
                print(f"{kind:9} {variant:15} {statistics.median(rates):>10,.0f} {min(rates):>8,.0f}–{max(rates):<8,.0f} "
                      f"{statistics.median(rates) / base:>6.2f}× {statistics.median(cpu):>13.0f} ({min(cpu):.0f}–{max(cpu):.0f})")
    RESULTS.mkdir(parents=True, exist_ok=True)
    output = RESULTS / f"persist-micro-{stamp}.json"
    output.write_text(json.dumps(report, indent=2, default=str))
    log(f"wrote {output.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
