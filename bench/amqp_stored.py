"""Demands STORED per second: RabbitMQ → bridge → Kafka → consumer, against Kafka-direct ingest (issue 18).

    .venv/bin/python -m bench.amqp_stored [--messages 50000] [--repeat 3] [--processes 1,2] [--prefetch 500]

One run, alternating (the order of the two paths flips every repetition), the same N reference-
format demands (unique ids, ~153-byte bodies) go to a fresh 3-partition topic and a fresh, migrated
PostgreSQL database (cloned from a template migrated once; `umsg_abench_<tag>_…`):

- direct:  a real `manage.py consume_demands --no-broadcast` subprocess is started and waits until
  it holds its partitions; then this process produces the demands (`produce_demand`: acks=all,
  idempotent, keyed source:id — what a source does) and flushes. Timed from the first produce() to
  the moment COUNT(*) of demands_demand reaches N (polled every 0.2 s).
- bridge ×P: a fresh durable queue; the consumer as above, then a real `manage.py bridge_amqp
  --processes P` subprocess (the product as is: acks only after Kafka confirmed) waits until it
  consumes the queue; then this process publishes the demands (persistent, publisher confirms,
  2,000 unconfirmed at most, pika SelectConnection). Timed from the first publish to COUNT(*) = N.

Both clocks include the consumer's work, so the ratio bridge/direct is the one issue 18 asks for
(demands stored per second). Also reported: CPU seconds of the consumer and of the bridge (all its
processes) over the timed window, their peak RSS (VmHWM), the load average around each run. After
each run: count(DISTINCT (source, message_id)) = count(*) = N, i.e. every demand stored exactly
once. Topics, queues and databases made here are dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
import uuid
from pathlib import Path

from bench import harness
from bench.amqp_bridge import (BridgeProcess, ConfirmedPublisher, bodies, delete_queue, delete_topic, new_topic,
                               queue_state, wait_for)
from bench.harness import PYTHON, log

import json  # noqa: E402  (after the bench imports: amqp_bridge sets Django up)

from demands.kafka import make_producer, produce_demand  # noqa: E402


class Template(harness.PostgresTemplate):
    """harness.PostgresTemplate under this session's own database prefix."""

    def __init__(self, server_url: str, tag: str, prefix: str):
        self.server_url = server_url.rstrip("/")
        self.admin_url = f"{self.server_url}/postgres"
        self.prefix = f"{prefix}_{tag}"
        self.name = f"{self.prefix}_template"
        self.clones = 0
        self.live = set()
        self._execute(f'DROP DATABASE IF EXISTS "{self.name}"')
        self._execute(f'CREATE DATABASE "{self.name}"')
        self.url = f"{self.server_url}/{self.name}"


def cpu_by_command(names=("beam.smp", "java")) -> dict[str, float]:
    """CPU seconds so far of the shared brokers' processes (RabbitMQ's beam.smp, Kafka's java), read
    from /proc (read only; other sessions' use of the brokers is counted too)."""
    out = dict.fromkeys(names, 0.0)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm = text[text.index("(") + 1:text.rindex(")")]
        if comm in out:
            fields = text.rsplit(")", 1)[1].split()
            out[comm] += (int(fields[11]) + int(fields[12])) / harness.CLOCK_TICKS
    return out


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy so far (/proc/stat: all but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / harness.CLOCK_TICKS


class Meter:
    """Broker CPU and machine busy-ness over a window (start() … stop(seconds))."""

    def start(self) -> None:
        self.brokers, self.busy, self.at = cpu_by_command(), machine_busy(), time.perf_counter()

    def stop(self) -> dict:
        brokers, busy, seconds = cpu_by_command(), machine_busy(), time.perf_counter() - self.at
        return {"rabbitmq_cpu_s": brokers["beam.smp"] - self.brokers["beam.smp"],
                "kafka_cpu_s": brokers["java"] - self.brokers["java"],
                "machine_busy_cores": (busy - self.busy) / seconds if seconds else None}


def distinct_demands(db) -> tuple[int, int]:
    return db._conn.execute("SELECT count(*), count(DISTINCT (source, message_id)) FROM demands_demand").fetchone()


def start_consumer(db, topic: str, name: str, log_dir: Path, args) -> harness.Child:
    env = harness.child_env(db.url, KAFKA_TOPICS=topic, KAFKA_DLQ_TOPIC=f"{topic}.dlq", LOG_LEVEL="INFO")
    cmd = [PYTHON, "manage.py", "consume_demands", "--topics", topic, "--group", f"bench-{name}", "--no-broadcast",
           "--batch-size", str(args.batch_size), "--batch-time", str(args.batch_time)]
    child = harness.start(name, cmd, env=env, log_dir=log_dir)
    wait_for(lambda: bool(harness.ownership(child.log_path)) and harness.ownership(child.log_path)[-1][1]
             or child.proc.poll() is not None, 120, "consumer assigned", interval=0.2)
    if child.proc.poll() is not None:
        raise RuntimeError(f"consumer exited {child.proc.returncode}:\n{child.tail()}")
    return child


def wait_stored(db, n: int, children: list, timeout: float) -> tuple[float, int, float]:
    """Poll COUNT(*) (every 0.05 s until the first row, then every 0.2 s) until n: when the first
    row was seen, how many were there then, and when n were (perf_counter)."""
    deadline = time.monotonic() + timeout
    last_log = time.monotonic()
    first = None
    while True:
        stored = db.count()
        now = time.perf_counter()
        if stored and first is None:
            first, at_first = now, stored
        if stored >= n:
            return first, at_first, now
        for child in children:
            if child.proc.poll() is not None:
                raise RuntimeError(f"{child.name} exited {child.proc.returncode} at {stored:,}/{n:,}:\n{child.tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{stored:,}/{n:,} stored after {timeout:.0f}s")
        if time.monotonic() - last_log > 5:
            log(f"  {stored:,}/{n:,} stored")
            last_log = time.monotonic()
        time.sleep(0.2 if first is not None else 0.05)


def finish(db, child: harness.Child, n: int, result: dict) -> dict:
    stats = child.stats()
    code = harness.stop(child)
    total, distinct = distinct_demands(db)
    assert total == distinct == n, f"stored {total:,} rows, {distinct:,} distinct (source, message_id), expected {n:,}"
    result.update(stored=total, distinct=distinct, consumer_peak_rss_mb=stats.get("peak_rss_mb"),
                  consumer_exit=code, load_after=os.getloadavg())
    return result


def timing(started: float | None, stored: tuple[float, int, float], n: int) -> dict:
    """live: from the first produce/publish to the n-th row; backlog: from the first row seen
    (minus the rows already there) to the n-th."""
    first, at_first, done = stored
    if started is not None:
        return {"seconds": done - started, "rate": n / (done - started)}
    return {"seconds": done - first, "rate": (n - at_first) / (done - first) if done > first else None}


def run_direct(template, payloads: list[bytes], run: str, rep: int, log_dir: Path, args, *, backlog: bool) -> dict:
    n = len(payloads)
    demands = [json.loads(body) for body in payloads]
    topic = new_topic()
    name = f"direct{'-backlog' if backlog else ''}-{rep}"
    db = template.fresh(name.replace("-", ""))
    child = None
    try:
        db.settle()
        if not backlog:
            child = start_consumer(db, topic, f"{run}-{name}", log_dir, args)
        producer = make_producer(**{"linger.ms": args.linger_ms})
        failed = []

        def on_delivery(error, _message):
            if error is not None:
                failed.append(error)

        load_before = os.getloadavg()
        consumer_cpu0 = child.stats().get("cpu_s", 0.0) if child else 0.0
        meter = Meter()
        meter.start()
        started, cpu = time.perf_counter(), time.process_time()
        for demand in demands:
            produce_demand(producer, demand, topic=topic, on_delivery=on_delivery)
        assert producer.flush(120) == 0 and not failed, failed[:3]
        produced_at, producer_cpu = time.perf_counter(), time.process_time() - cpu
        if backlog:
            child = start_consumer(db, topic, f"{run}-{name}", log_dir, args)
            consumer_cpu0 = child.stats().get("cpu_s", 0.0)
            load_before = os.getloadavg()
            meter.start()
        stored = wait_stored(db, n, [child], args.timeout)
        consumer_cpu = child.stats().get("cpu_s", 0.0) - consumer_cpu0
        times = timing(None if backlog else started, stored, n)
        result = {"path": "direct", "mode": "backlog" if backlog else "live", "rep": rep, **times,
                  **meter.stop(),
                  "source_rate": n / (produced_at - started), "source_cpu_s": producer_cpu, "consumer_cpu_s": consumer_cpu,
                  "bridge_cpu_s": None, "bridge_peak_rss_mb": None, "load_before": load_before}
        result = finish(db, child, n, result)
        child = None
        return result
    finally:
        if child is not None:
            harness.stop(child)
        db.drop()
        delete_topic(topic)
        delete_topic(f"{topic}.dlq")


def run_bridge(template, payloads: list[bytes], run: str, rep: int, processes: int, log_dir: Path, args, *,
               backlog: bool, prefetch: int) -> dict:
    n = len(payloads)
    topic, queue = new_topic(), f"bench-stored-{uuid.uuid4().hex[:8]}"
    name = f"bridge{processes}p{prefetch}{'-backlog' if backlog else ''}-{rep}"
    db = template.fresh(name.replace("-", ""))
    child = bridge = None
    try:
        db.settle()
        publisher = ConfirmedPublisher(args.url, queue, payloads)
        if backlog:
            publisher.run()  # the queue filled first (persistent, confirmed)
        else:
            ConfirmedPublisher(args.url, queue, []).run()  # declares the queue
        child = start_consumer(db, topic, f"{run}-{name}-consumer", log_dir, args)
        # BridgeProcess passes this process's environment: the bridge's heartbeat goes to the run's database.
        os.environ.update({k: v for k, v in harness.child_env(db.url).items() if k.startswith(("DJANGO_", "DATABASE_"))})
        bridge = BridgeProcess(url=args.url, queue=queue, topic=topic, prefetch=prefetch, linger_ms=args.linger_ms,
                               processes=processes, log_path=log_dir / f"{run}-{name}.log")
        # Both modes: measured from the moment the bridge consumes (its Django start-up excluded).
        wait_for(lambda: queue_state(args.url, queue)[1] == processes or bridge.proc.poll() is not None, 120,
                 "bridge consuming", interval=0.05)
        if bridge.proc.poll() is not None:
            raise RuntimeError(f"bridge exited {bridge.proc.returncode} (log: {bridge.log_path})")
        load_before = os.getloadavg()
        consumer_cpu0, bridge_cpu0 = child.stats().get("cpu_s", 0.0), bridge.cpu_seconds()
        meter = Meter()
        meter.start()
        started = None
        if not backlog:
            thread = threading.Thread(target=publisher.run, daemon=True)
            started = time.perf_counter()
            thread.start()
        stored = wait_stored(db, n, [child], args.timeout)
        metered = meter.stop()
        if not backlog:
            thread.join(60)
        consumer_cpu, bridge_cpu = child.stats().get("cpu_s", 0.0) - consumer_cpu0, bridge.cpu_seconds() - bridge_cpu0
        rss = bridge.peak_rss_mb()
        wait_for(lambda: queue_state(args.url, queue)[0] == 0, 60, "queue empty", interval=0.2)
        code = bridge.stop()
        assert code == 0, f"bridge exited {code} (log: {bridge.log_path})"
        bridge = None
        assert queue_state(args.url, queue) == (0, 0), "messages left in the queue after the bridge stopped"
        result = {"path": f"bridge x{processes}, prefetch {prefetch}", "mode": "backlog" if backlog else "live", "rep": rep,
                  **timing(started, stored, n), **metered,
                  "source_rate": n / publisher.elapsed if publisher.elapsed else None,
                  "consumer_cpu_s": consumer_cpu, "bridge_cpu_s": bridge_cpu, "bridge_peak_rss_mb": rss,
                  "load_before": load_before}
        result = finish(db, child, n, result)
        child = None
        return result
    finally:
        if bridge is not None:
            bridge.stop()
        if child is not None:
            harness.stop(child)
        db.drop()
        delete_topic(topic)
        delete_topic(f"{topic}.dlq")
        try:
            delete_queue(args.url, queue)
        except Exception:
            pass


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--processes", default="1", help="comma-separated bridge_amqp --processes values")
    parser.add_argument("--prefetch", default="500", help="comma-separated bridge prefetch values (the product's default: 500)")
    parser.add_argument("--linger-ms", type=float, default=5, help="linger.ms of the direct producer and the bridge (default 5)")
    parser.add_argument("--batch-size", type=int, default=500, help="consume_demands --batch-size (its default)")
    parser.add_argument("--batch-time", type=float, default=0.2)
    parser.add_argument("--url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"))
    parser.add_argument("--pg-server", default=os.environ.get("BENCH_PG_SERVER", "postgres://umsg@127.0.0.1:5433"))
    parser.add_argument("--db-prefix", default="umsg_abench", help="names of the databases made (and dropped) here")
    parser.add_argument("--timeout", type=float, default=600, help="seconds a run may take")
    parser.add_argument("--log-dir", default="/tmp/amqp_stored", help="consumer and bridge logs")
    parser.add_argument("--modes", default="live,backlog", help="live (source sends while timed), backlog (source first)")
    args = parser.parse_args()
    run = uuid.uuid4().hex[:6]
    log_dir = Path(args.log_dir)
    payloads = bodies(args.messages, run)
    process_counts = [int(p) for p in args.processes.split(",")]
    template = Template(args.pg_server, run, args.db_prefix)
    results: list[dict] = []
    try:
        harness.manage("migrate", "--noinput", "-v", "0", database_url=template.url)
        log(f"migrated {template.name}; {args.messages:,} demands a run, load average {os.getloadavg()}")
        modes = [m.strip() for m in args.modes.split(",") if m.strip()]
        for rep in range(1, args.repeat + 1):
            prefetches = [int(p) for p in args.prefetch.split(",")]
            steps = [(mode, "direct", None) for mode in modes] + [(mode, "bridge", (p, f)) for mode in modes
                                                                   for p in process_counts for f in prefetches]
            steps = [step for mode in modes for step in steps if step[0] == mode]
            if rep % 2 == 0:
                steps.reverse()  # alternate: what ran first runs last in the next repetition
            for mode, kind, processes in steps:
                log(f"[{rep}/{args.repeat}] {mode} {kind}{'' if processes is None else f' x{processes[0]}, prefetch {processes[1]}'}")
                if kind == "direct":
                    result = run_direct(template, payloads, run, rep, log_dir, args, backlog=mode == "backlog")
                else:
                    result = run_bridge(template, payloads, run, rep, processes[0], log_dir, args, backlog=mode == "backlog",
                                        prefetch=processes[1])
                results.append(result)
                log(f"  {mode} {result['path']}: {result['rate']:,.0f} stored/s in {result['seconds']:.1f}s; "
                    f"consumer CPU {result['consumer_cpu_s']:.1f}s, bridge CPU {result['bridge_cpu_s'] or 0:.1f}s, "
                    f"bridge RSS {result['bridge_peak_rss_mb'] or 0:.0f} MB, load {result['load_before'][0]:.1f}"
                    f"→{result['load_after'][0]:.1f}; {result['distinct']:,} distinct = N")
    finally:
        template.drop()
    report(results, args)


def report(results: list[dict], args) -> None:
    direct = {(r["mode"], r["rep"]): r["rate"] for r in results if r["path"] == "direct"}
    print()
    print(f"{args.messages:,} demands a run, medians of {args.repeat} (range); ratio = bridge / direct of the same repetition; "
          f"linger {args.linger_ms:g} ms, {os.cpu_count()} cores")
    print("| path | stored/s | × direct | source msgs/s | CPU s: consumer | bridge | RabbitMQ | Kafka | machine busy (cores) "
          "| bridge peak RSS | load avg (1 min) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for mode, path in dict.fromkeys((r["mode"], r["path"]) for r in results):
        runs = [r for r in results if r["path"] == path and r["mode"] == mode]
        med = lambda key: statistics.median([r[key] for r in runs if r[key] is not None]) if any(r[key] is not None for r in runs) else None  # noqa: E731
        ratios = [r["rate"] / direct[mode, r["rep"]] for r in runs if (mode, r["rep"]) in direct]
        ratio = f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})" if path != "direct" else "1.00"
        rates = [r["rate"] for r in runs]
        loads = [x for r in runs for x in (r["load_before"][0], r["load_after"][0])]
        bridge_cpu, rss = med("bridge_cpu_s"), med("bridge_peak_rss_mb")
        bridge_cpu = "" if bridge_cpu is None else f"{bridge_cpu:.1f}"
        rss = "" if rss is None else f"{rss:.0f} MB"
        print(f"| {mode}: {path} | {med('rate'):,.0f} ({min(rates):,.0f}–{max(rates):,.0f}) | {ratio} | {med('source_rate'):,.0f} "
              f"| {med('consumer_cpu_s'):.1f} | {bridge_cpu} | {med('rabbitmq_cpu_s'):.1f} | {med('kafka_cpu_s'):.1f} "
              f"| {med('machine_busy_cores'):.2f} | {rss} | {min(loads):.1f}–{max(loads):.1f} |")
    print()
    for r in results:
        print(f"rep {r['rep']} {r['mode']:<7} {r['path']:<24} {r['rate']:>8,.0f}/s {r['seconds']:6.1f}s consumer CPU {r['consumer_cpu_s']:5.1f}s "
              f"bridge CPU {r['bridge_cpu_s'] or 0:5.1f}s RSS {r['bridge_peak_rss_mb'] or 0:4.0f} MB consumer RSS "
              f"{r['consumer_peak_rss_mb'] or 0:4.0f} MB RabbitMQ CPU {r['rabbitmq_cpu_s']:4.1f}s Kafka CPU {r['kafka_cpu_s']:4.1f}s "
              f"busy {r['machine_busy_cores']:.2f} cores load {r['load_before'][0]:.1f}→{r['load_after'][0]:.1f} "
              f"stored {r['stored']:,} distinct {r['distinct']:,}")


if __name__ == "__main__":
    main()
