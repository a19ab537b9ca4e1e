"""Ingest throughput (issue 6 §1): our consumer against the naive one and the raw floor, side by side.

One run: pre-load N reference-format demands (~260 B, unique ids) on a fresh 6-partition topic,
then, for every database asked for and every repeat, each contender reads the same topic with a
fresh consumer group into a fresh, migrated database:

  ours      `manage.py consume_demands --no-broadcast` (subprocess, production settings, DEBUG off)
  proto     the same loop with bench/prototype_persist.py's COPY path swapped in
  naive     the reference article's loop: one message → one ORM save → one Kafka commit (subset)
  floor     confluent-kafka + psycopg COPY into staging + INSERT … ON CONFLICT DO NOTHING, no Django
            (SQLite: executemany INSERT … ON CONFLICT DO NOTHING)
  copy      plain COPY into demands_demand, not idempotent (SQLite: plain executemany INSERT)
  two       two `consume_demands` processes in one group (PostgreSQL only)
  proto_async, floor_async   the same with asynchronous offset commits (variants, not in the default set)
  two_proto two proto processes in one group (variant)
  two_floor two floor processes in one group: how far two processes can scale on this machine

Throughput comes from the stored rows' `received_at` (stamped once per batch), from the first
batch to the last, so process start-up, the group join and shutdown are not counted. `--profile`
adds py-spy runs of ours and proto (or the contenders named) on each database, sampled from the
first stored row to the last.

    python -m bench.ingest [--messages 200000] [--db postgres,sqlite] [--repeat 2] [--profile]

Prints a table, writes bench/results/ingest-<timestamp>.json. Everything it starts (consumers,
py-spy) it stops; everything it creates (topic, databases, files) it removes unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import harness
from bench.harness import PYTHON, RESULTS, ROOT, log
from bench.pyspy_summary import format_summary, summarize
from bench.workload import create_topic, delete_topics, preload

LABELS = {
    "ours": "ours: consume_demands",
    "proto": "ours + prototype COPY persist",
    "naive": "naive: 1 msg → 1 save → 1 commit",
    "floor": "floor: COPY→staging + ON CONFLICT",
    "copy": "plain COPY (not idempotent)",
    "two": "ours ×2 processes, one group",
    "proto_async": "proto + async offset commit",
    "floor_async": "floor + async offset commit",
    "two_proto": "proto ×2 processes, one group",
    "two_floor": "floor ×2 processes, one group",
}
SQLITE_LABELS = {"floor": "floor: executemany ON CONFLICT", "copy": "plain executemany INSERT"}
PHASES = {"postgres": ["ours", "proto", "proto_async", "naive", "floor", "floor_async", "copy", "two", "two_proto", "two_floor"],
          "sqlite": ["ours", "proto", "proto_async", "naive", "floor", "floor_async", "copy"]}

# Realistic rules, seeded in every database so the consumer runs with them once ingest applies rules.
RULES = [
    dict(name="Payment exceptions are urgent", order=10, match_types="log_exception", match_keywords="payment,支付",
         set_priority="urgent", add_tags="billing", set_category="payments"),
    dict(name="API anomalies to on-call", order=20, match_types="api_anomaly", set_priority="high", set_category="api"),
    dict(name="Mobile feedback", order=30, match_sources="ios_app,android_app,mini_program", add_tags="mobile"),
    dict(name="Timeouts", order=40, match_regex=r"(?i)time(d)?out|超时", add_tags="performance"),
    dict(name="Feature requests to product", order=50, match_types="feature_request", set_category="product", set_priority="low"),
]

_children: list[harness.Child] = []  # stopped in `finally`, whatever happens


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=200_000, help="demands pre-loaded and consumed per contender")
    parser.add_argument("--naive-messages", type=int, default=10_000, help="subset the naive consumer stores")
    parser.add_argument("--db", default="postgres", help="postgres, sqlite, or both comma-separated")
    parser.add_argument("--phases", default="ours,proto,naive,floor,copy,two", help="contenders to run (see above)")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each contender (the spread is reported)")
    parser.add_argument("--batch-size", type=int, default=500, help="ours/proto/floor batch size (consume_demands' default)")
    parser.add_argument("--batch-time", type=float, default=0.2)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--kafka-config", action="append", default=[], metavar="PROPERTY=VALUE",
                        help="librdkafka property for ours/proto/two (KAFKA_CONFIG_…), e.g. queued.max.messages.kbytes=16384")
    parser.add_argument("--profile", nargs="?", const="ours,proto", default="",
                        help="also profile these contenders with py-spy on each --db (default: ours,proto)")
    parser.add_argument("--profile-on-cpu", action="store_true",
                        help="sample only threads on a CPU (no --idle): with the read-ahead thread, waits for the GIL "
                             "otherwise show up as time in whatever frame a thread waits in")
    parser.add_argument("--topic", help="use this already loaded topic (≥ --messages demands) instead of a fresh one")
    parser.add_argument("--no-rules", action="store_true", help="do not seed the rules table")
    parser.add_argument("--phase-timeout", type=float, default=900, help="seconds before a contender is given up on")
    parser.add_argument("--pg-server", default=os.environ.get("BENCH_PG_SERVER", "postgres://umsg@127.0.0.1:5433"),
                        help="PostgreSQL server URL without database (a superuser role: it creates databases)")
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    parser.add_argument("--no-services", action="store_true", help="do not run services/up.sh")
    parser.add_argument("--keep", action="store_true", help="keep the topic, databases and SQLite files")
    parser.add_argument("--output", type=Path, help="JSON path (default bench/results/ingest-<timestamp>.json)")
    return parser.parse_args(argv)


# -- contenders -------------------------------------------------------------------------------------
def commands(phase: str, *, db, topic: str, group: str, args) -> tuple[list[list[str]], dict, int]:
    """(commands to start, environment, rows that mean "done") for one contender."""
    kafka_config = {}
    for item in args.kafka_config:
        name, _, value = item.partition("=")
        kafka_config["KAFKA_CONFIG_" + name.strip().upper().replace(".", "_")] = value.strip()
    env = harness.child_env(db.url, KAFKA_TOPICS=topic, KAFKA_DLQ_TOPIC=f"{topic}.dlq",
                            KAFKA_BOOTSTRAP_SERVERS=args.bootstrap, LOG_LEVEL="INFO", **kafka_config)
    batch = ["--batch-size", str(args.batch_size), "--batch-time", str(args.batch_time)]
    ours = [PYTHON, "manage.py", "consume_demands", "--topics", topic, "--group", group, "--no-broadcast", *batch]
    if phase == "ours":
        return [ours], env, args.messages
    if phase == "two":
        return [ours, ours], env, args.messages
    if phase in ("proto", "proto_async", "two_proto"):
        variant = ["--async-commit"] if phase == "proto_async" else []
        proto = [PYTHON, "-m", "bench.run_consumer", "--topics", topic, "--group", group, "--no-broadcast", *batch, *variant]
        return [proto] * (2 if phase == "two_proto" else 1), env, args.messages
    if phase == "naive":
        limit = min(args.naive_messages, args.messages)
        return [[PYTHON, "-m", "bench.naive_consumer", "--topic", topic, "--group", group, "--limit", str(limit),
                 "--bootstrap", args.bootstrap, "--timeout", str(args.phase_timeout)]], env, limit
    if phase in ("floor", "floor_async", "copy", "two_floor"):
        mode = "copy" if db.kind == "postgres" else "insert"
        mode = "upsert" if phase.endswith("floor") or phase == "floor_async" else mode
        variant = ["--async-commit"] if phase == "floor_async" else []
        return [[PYTHON, "-m", "bench.floor_consumer", "--db-url", db.url, "--topic", topic, "--group", group, "--mode", mode,
                 "--bootstrap", args.bootstrap, *batch, "--timeout", str(args.phase_timeout), *variant]] * (2 if phase == "two_floor" else 1), env, args.messages
    raise ValueError(phase)


def run_contender(phase: str, *, template, topic: str, run_tag: str, attempt: str, args, log_dir: Path,
                  profile_to: Path | None = None) -> dict:
    db = template.fresh(phase)
    group = f"bench-{run_tag}-{template.kind}-{phase}-{attempt}"
    cmds, env, target = commands(phase, db=db, topic=topic, group=group, args=args)
    label = f"{phase}/{template.kind} {attempt}"
    log(f"{label}: {len(cmds)} process(es), target {target:,} rows, database {getattr(db, 'name', db.url)}")
    result: dict = {"phase": phase, "db": template.kind, "attempt": attempt, "target": target, "processes": len(cmds),
                    "load_avg_before": os.getloadavg()[0]}
    wal_before = db.settle() if hasattr(db, "settle") else None
    children = [harness.start(f"{template.kind}-{phase}-{attempt}-{i}", cmd, env=env, log_dir=log_dir) for i, cmd in enumerate(cmds)]
    _children.extend(children)
    spy = None
    started = time.monotonic()
    first_row_at = done_at = None
    last_report = started
    stored = 0
    stats = [{} for _ in children]  # refreshed every poll: a process that exits by itself keeps its last
    try:
        while True:
            time.sleep(0.25 if first_row_at is None else 0.5)
            stats = [c.stats() or old for c, old in zip(children, stats)]
            stored = db.count()
            now = time.monotonic()
            if stored and first_row_at is None:
                first_row_at = now
                if profile_to is not None:
                    spy = subprocess.Popen(
                        [harness.tool("py-spy"), "record", "-p", str(children[0].pid), "-o", str(profile_to), "--format", "raw",
                         "--rate", "200", *([] if args.profile_on_cpu else ["--idle"]), "--nonblocking"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
            if stored >= target:
                done_at = now
                break
            if now - last_report >= 3:
                rss = "/".join(f"{s.get('rss_mb', 0):.0f}" for s in stats)
                rate = stored / (now - first_row_at) if first_row_at and now > first_row_at else 0
                log(f"  {label}: {stored:,}/{target:,} stored ({rate:,.0f}/s since the first row), RSS {rss} MB")
                last_report = now
            exited = [c for c in children if c.proc.poll() is not None]
            if exited:
                stored = db.count()
                if stored >= target:
                    done_at = time.monotonic()
                    break
                result["error"] = f"{exited[0].name} exited with {exited[0].proc.returncode}:\n{exited[0].tail()}"
                log(f"  {label}: {result['error']}")
                break
            if now - started > args.phase_timeout:
                result["error"] = f"timed out after {args.phase_timeout:.0f}s with {stored:,}/{target:,} stored"
                log(f"  {label}: {result['error']}")
                break
        result["processes_stats"] = [c.stats() or old for c, old in zip(children, stats)]  # VmHWM = peak RSS
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait(5)
        for child in children:
            code = harness.stop(child)
            _children.remove(child)
            if code not in (0, None, -signal.SIGTERM):
                result.setdefault("exit_codes", {})[child.name] = code
    result["stored"] = stored
    result["load_avg_after"] = os.getloadavg()[0]
    if wal_before is not None:
        result.update(db.since(wal_before))
    result.update(harness.throughput(db.received_at()))
    if len(children) > 1 and hasattr(db, "received_at_by_partition"):
        result.update(harness.all_consuming([c.log_path for c in children], db.received_at_by_partition()))
    if first_row_at and done_at and done_at > first_row_at:
        result["rate_polled"] = round(stored / (done_at - first_row_at), 1)  # a cross-check, ±0.5 s resolution
    result["db_size_mb"] = round(db.size_bytes() / 2**20, 1)
    stats = result["processes_stats"]
    result["peak_rss_mb"] = max((s.get("peak_rss_mb", 0) for s in stats), default=None)
    result["rss_mb"] = max((s.get("rss_mb", 0) for s in stats), default=None)
    result["cpu_s"] = round(sum(s.get("cpu_s", 0) for s in stats), 2)
    if result.get("rate") and result.get("seconds"):
        result["cpu_per_1k_demands_s"] = round(result["cpu_s"] / stored * 1000, 3) if stored else None
    if not args.keep:
        db.drop()
    rate = result.get("rate")
    log(f"{label}: {stored:,} rows, {rate and f'{rate:,.0f}'} demands/s (steady {result.get('rate_mid') or 0:,.0f}/s), "
        f"peak RSS {result['peak_rss_mb']} MB, CPU {result['cpu_s']} s"
        + (f", WAL {result['wal_mb']:,.0f} MB, {result['checkpoints_during_run']} checkpoint(s)" if "wal_mb" in result else "")
        + (f"; {result['rate_all_consuming']:,.0f}/s while all {len(children)} held their partitions "
           f"({result['all_consuming_seconds']} s)" if result.get("rate_all_consuming") else ""))
    return result


# -- set-up ---------------------------------------------------------------------------------------
def seed_rules(database_url: str) -> int:
    code = (
        "import json, sys\nfrom demands.models import Rule\n"
        f"rules = json.loads({json.dumps(json.dumps(RULES))})\n"
        "Rule.objects.bulk_create([Rule(**r) for r in rules]); print(Rule.objects.count())"
    )
    try:
        return int(harness.manage("shell", "-c", code, database_url=database_url).strip().splitlines()[-1])
    except Exception as exc:  # a renamed Rule field must not stop a benchmark
        log(f"warning: could not seed rules: {exc}")
        return 0


def make_templates(kinds: list[str], tag: str, args, work_dir: Path) -> dict:
    templates = {}
    for kind in kinds:
        if kind == "postgres":
            template = harness.PostgresTemplate(args.pg_server, tag)
        else:
            template = harness.SqliteTemplate(work_dir, tag)
        template.kind = kind
        templates[kind] = template  # registered first, so `finally` drops it even if migrate fails
        harness.manage("migrate", "--noinput", "-v", "0", database_url=template.url)
        template.rules = 0 if args.no_rules else seed_rules(template.url)
        log(f"{kind}: migrated template {getattr(template, 'name', template.url)}, {template.rules} rules")
    return templates


def machine() -> dict:
    info = {"host": platform.node(), "python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        mem = Path("/proc/meminfo").read_text().split()[1]
        info["memory_gb"] = round(int(mem) / 2**20, 1)
        model = [l for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name")]
        info["cpu"] = model[0].split(":", 1)[1].strip() if model else platform.processor()
        info["load_avg_at_start"] = os.getloadavg()
    except (OSError, IndexError):
        pass
    return info


def server_versions(args, kinds) -> dict:
    out = {}
    if "postgres" in kinds:
        import psycopg

        with psycopg.connect(f"{args.pg_server}/postgres") as conn:
            out["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]
            out["postgresql_synchronous_commit"] = conn.execute("SHOW synchronous_commit").fetchone()[0]
    import confluent_kafka
    import sqlite3

    out["sqlite"] = sqlite3.sqlite_version
    out["librdkafka"] = confluent_kafka.libversion()[0]
    return out


# -- report ---------------------------------------------------------------------------------------
def summarize_runs(runs: list[dict], kinds: list[str], phases: list[str]) -> dict:
    summary: dict = {}
    for kind in kinds:
        for phase in phases:
            rates = [r["rate"] for r in runs if r["db"] == kind and r["phase"] == phase and r.get("rate") and not r.get("error")]
            mids = [r["rate_mid"] for r in runs if r["db"] == kind and r["phase"] == phase and r.get("rate_mid") and not r.get("error")]
            rss = [r["peak_rss_mb"] for r in runs if r["db"] == kind and r["phase"] == phase and r.get("peak_rss_mb")]
            if not rates:
                continue
            summary.setdefault(kind, {})[phase] = {
                "rate_median": round(statistics.median(rates)), "rate_min": round(min(rates)), "rate_max": round(max(rates)),
                "rate_mid_median": round(statistics.median(mids)) if mids else None,
                "runs": len(rates), "peak_rss_mb_max": max(rss) if rss else None,
            }
    return summary


def ratios(runs: list[dict], kinds: list[str]) -> dict:
    """Median ratio, and the range over same-repeat pairs (run i of one / run i of the other)."""
    pairs = [("ours", "floor"), ("ours", "naive"), ("proto", "floor"), ("proto", "naive"), ("proto", "ours"),
             ("proto_async", "floor"), ("proto_async", "floor_async"), ("two", "ours"), ("two_proto", "proto"), ("two_floor", "floor"),
             ("floor", "copy")]
    out: dict = {}
    for kind in kinds:
        for a, b in pairs:
            by_attempt = {}
            for r in runs:
                if r["db"] == kind and r["phase"] in (a, b) and r.get("rate") and not r.get("error"):
                    by_attempt.setdefault(r["attempt"], {})[r["phase"]] = r["rate"]
            values = [v[a] / v[b] for v in by_attempt.values() if a in v and b in v]
            if values:
                out.setdefault(kind, {})[f"{a}/{b}"] = {
                    "median": round(statistics.median(values), 3), "min": round(min(values), 3), "max": round(max(values), 3)}
            if a.startswith("two"):  # the same ratio over the window where every process held its partitions
                steady = {r["attempt"]: r["rate_all_consuming"] for r in runs
                          if r["db"] == kind and r["phase"] == a and r.get("rate_all_consuming") and not r.get("error")}
                values = [steady[attempt] / v[b] for attempt, v in by_attempt.items() if attempt in steady and b in v]
                if values:
                    out.setdefault(kind, {})[f"{a}/{b} all consuming"] = {
                        "median": round(statistics.median(values), 3), "min": round(min(values), 3), "max": round(max(values), 3)}
    return out


def print_table(summary: dict, ratio: dict, profiles: dict) -> None:
    print()
    print(f"{'db':9} {'contender':38} {'demands/s':>10} {'min–max':>17} {'steady':>8} {'peak RSS':>9}")
    for kind, phases in summary.items():
        labels = {**LABELS, **(SQLITE_LABELS if kind == "sqlite" else {})}
        for phase, s in phases.items():
            spread = f"{s['rate_min']:,}–{s['rate_max']:,}" if s["runs"] > 1 else "(1 run)"
            print(f"{kind:9} {labels[phase]:38} {s['rate_median']:>10,} {spread:>17} {s['rate_mid_median'] or 0:>8,} "
                  f"{s['peak_rss_mb_max'] or 0:>6.0f} MB")
    print()
    targets = {"ours/floor": "≥ 0.75", "ours/naive": "≥ 35", "two/ours": "≥ 1.6", "two/ours all consuming": "≥ 1.6"}
    for kind, values in ratio.items():
        for name, v in values.items():
            target = f"   target {targets[name]}" if name in targets else ""
            print(f"{kind:9} {name:26} {v['median']:8.2f}  ({v['min']:.2f}–{v['max']:.2f}){target}")
    for name, prof in profiles.items():
        print(f"\nprofile of {name} ({prof['rate'] and round(prof['rate']):,} demands/s while sampled, "
              f"py-spy {prof['sampling']}, {prof['file']}):")
        print(format_summary(prof["breakdown"], rate=prof["rate"]))


def _interrupt(_signum, _frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    args = parse_args(argv)
    kinds = [k.strip() for k in args.db.replace("both", "postgres,sqlite").split(",") if k.strip()]
    if unknown := set(kinds) - set(PHASES):
        raise SystemExit(f"--db: unknown {unknown}")
    wanted = [p.strip() for p in args.phases.split(",") if p.strip()]
    if args.profile and not harness.tool("py-spy"):
        raise SystemExit("--profile needs py-spy on PATH (pip install -e '.[bench]')")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tag = f"{os.getpid()}"
    run_tag = f"b{time.strftime('%m%d%H%M%S')}"
    topic = f"bench-ingest-{run_tag}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    log_dir = RESULTS / f"ingest-{stamp}-logs"
    work_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"umsg-bench-{tag}"
    output = args.output or RESULTS / f"ingest-{stamp}.json"
    report: dict = {"benchmark": "ingest", "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(),
                    "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                    "topic": topic, "runs": []}
    templates: dict = {}
    topic_created = False
    # SIGTERM → KeyboardInterrupt, so `finally` stops the children and drops what was created.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if not args.no_services:
            subprocess.run([str(ROOT / "services" / "up.sh"), "kafka", *(["postgres"] if "postgres" in kinds else [])],
                           check=True, timeout=300)
        report["versions"] = server_versions(args, kinds)
        if args.topic:
            topic = report["topic"] = args.topic
            log(f"using the loaded topic {topic}")
        else:
            log(f"pre-loading {args.messages:,} demands on {topic} ({args.partitions} partitions)")
            create_topic(args.bootstrap, topic, args.partitions)
            topic_created = True
            report["preload"] = preload(args.bootstrap, topic, args.messages, run=run_tag, log=log)
            log(f"pre-loaded: {report['preload']}")
        templates = make_templates(kinds, tag, args, work_dir)
        report["rules_seeded"] = {k: t.rules for k, t in templates.items()}
        for repeat in range(1, args.repeat + 1):
            for kind in kinds:
                for phase in [p for p in PHASES[kind] if p in wanted]:
                    try:
                        report["runs"].append(run_contender(phase, template=templates[kind], topic=topic, run_tag=run_tag,
                                                            attempt=f"r{repeat}", args=args, log_dir=log_dir))
                    except Exception as exc:  # one contender failing must not lose the others' figures
                        log(f"{phase}/{kind} r{repeat} failed: {exc!r}")
                        report["runs"].append({"phase": phase, "db": kind, "attempt": f"r{repeat}", "error": repr(exc)})
        profiles = {}
        for kind in kinds if args.profile else []:
            for phase in [p.strip() for p in args.profile.split(",") if p.strip() in PHASES[kind]]:
                path = RESULTS / f"profile-{phase}-{kind}-{stamp}.txt"
                run = run_contender(phase, template=templates[kind], topic=topic, run_tag=run_tag,
                                    attempt="profiled", args=args, log_dir=log_dir, profile_to=path)
                if path.exists():
                    profiles[f"{phase} on {kind}"] = {"file": str(path.relative_to(ROOT)), "rate": run.get("rate"),
                                                      "sampling": "on-CPU only" if args.profile_on_cpu else "--idle",
                                                      "breakdown": summarize(path), "run": run}
        report["profiles"] = profiles
        report["summary"] = summarize_runs(report["runs"], kinds, wanted)
        report["ratios"] = ratios(report["runs"], kinds)
        report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        print_table(report["summary"], report["ratios"], profiles)
        return 0
    except KeyboardInterrupt:
        log("interrupted: stopping what was started")
        return 130
    finally:
        for child in list(_children):
            harness.stop(child, grace=10)
        if not args.keep:
            for template in templates.values():
                try:
                    template.drop()
                except Exception as exc:
                    log(f"warning: could not drop {template.kind} template: {exc}")
            shutil.rmtree(work_dir, ignore_errors=True)
            if topic_created:
                delete_topics(args.bootstrap, [topic, f"{topic}.dlq"])
            elif args.topic:
                delete_topics(args.bootstrap, [f"{topic}.dlq"])  # the consumers created it
        if report["runs"]:
            output.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str))
            log(f"wrote {output.relative_to(ROOT) if output.is_relative_to(ROOT) else output}")


if __name__ == "__main__":
    sys.exit(main())
