"""Live latency (issue 6 §2): produce → row on a staff browser's websocket, p50/p95/p99.

Starts, on a fresh PostgreSQL database, the production shape: daphne serving the ASGI app and a
separate `consume_demands` process, both with REDIS_URL (the Redis channel layer) — or, with
`--mode embedded`, `run_dashboard --no-demo` (daphne + consume loop in one process, in-memory
layer: what `make run` starts). A staff session is created in the database; a websocket client
(the `websockets` package) connects to /ws/demands/ with its cookie, like the list page does.
Then demands are produced at `--rate` per second for `--seconds`; each row that arrives
(`<tr id="demand-<pk>"…>`) is timed, and afterwards pk → message id → produce time gives the
latency of every demand. Produce time is taken just before `Producer.produce()`; the clock is
the same (one process).

    python -m bench.live_latency [--rate 200] [--seconds 60] [--mode split|embedded] [--batch-time 0.2]
                                 [--persist ours|fast] [--async-commit]

Prints p50/p95/p99/max and writes bench/results/live-latency-<timestamp>.json. Bounded: the run
lasts --seconds plus a drain of --drain seconds; everything it starts it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
from confluent_kafka import Producer

from bench import harness
from bench.harness import PYTHON, RESULTS, ROOT, log
from bench.workload import bench_demand, create_topic, delete_topics, encode

ROW_PK = re.compile(r'<tr id="demand-(\d+)"')


def add_stack_arguments(parser: argparse.ArgumentParser, *, modes=("split", "embedded", "embedded-fixed")) -> None:
    """The options of `LiveStack` (shared with bench.fanout)."""
    parser.add_argument("--mode", choices=list(modes), default="split",
                        help="split: daphne + consume_demands on Redis; embedded: run_dashboard --no-demo"
                        + ("; embedded-fixed: run_dashboard with the broadcast on daphne's loop (bench/run_dashboard_fixed.py)"
                           if "embedded-fixed" in modes else ""))
    parser.add_argument("--batch-size", type=int, default=None, help="consumer batch size (default: settings)")
    parser.add_argument("--batch-time", type=float, default=None, help="consumer batch time (default: settings)")
    parser.add_argument("--persist", choices=["ours", "fast"], default="ours", help="fast = bench/prototype_persist.py")
    parser.add_argument("--async-commit", action="store_true", help="consumer commits offsets asynchronously (bench/run_consumer.py)")
    parser.add_argument("--pg-server", default=os.environ.get("BENCH_PG_SERVER", "postgres://umsg@127.0.0.1:5433"))
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6380/0"))
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    parser.add_argument("--no-services", action="store_true", help="do not run services/up.sh")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200, help="demands produced per second")
    parser.add_argument("--seconds", type=float, default=60, help="how long to produce")
    parser.add_argument("--drain", type=float, default=10, help="seconds to wait for the last rows")
    add_stack_arguments(parser)
    parser.add_argument("--profile", action="store_true", help="py-spy the consumer process while producing (split mode)")
    parser.add_argument("--output", type=Path)
    return parser.parse_args(argv)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def staff_sessions(database_url: str, count: int = 1) -> list[str]:
    """`count` staff users, each with a logged-in session (created in the database: no login form,
    so the login throttle is not involved); their session keys."""
    code = (
        "from django.contrib.auth import get_user_model, SESSION_KEY, BACKEND_SESSION_KEY, HASH_SESSION_KEY\n"
        "from django.contrib.sessions.backends.db import SessionStore\n"
        "User = get_user_model()\n"
        f"for i in range({count}):\n"
        "    name = 'bench-staff' if i == 0 else f'bench-staff-{i}'\n"
        "    user = User.objects.create_user(name, password='bench-staff-pw', is_staff=True)\n"
        "    s = SessionStore()\n"
        "    s[SESSION_KEY] = str(user.pk)\n"
        "    s[BACKEND_SESSION_KEY] = 'django.contrib.auth.backends.ModelBackend'\n"
        "    s[HASH_SESSION_KEY] = user.get_session_auth_hash()\n"
        "    s.create()\n"
        "    print('session', s.session_key)"
    )
    out = harness.manage("shell", "-c", code, database_url=database_url)
    return [line.split()[1] for line in out.splitlines() if line.startswith("session ")]


def staff_session(database_url: str) -> str:
    return staff_sessions(database_url, 1)[0]


def wait_for_port(port: int, timeout: float, children) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in children:
            if child.proc.poll() is not None:
                raise RuntimeError(f"{child.name} exited with {child.proc.returncode}:\n{child.tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class WebsocketRecorder:
    """A websocket client in its own thread and event loop, timing every demand row it receives."""

    def __init__(self, url: str, session_key: str, origin: str):
        self.url, self.session_key, self.origin = url, session_key, origin
        self.arrivals: dict[int, float] = {}
        self.frames = 0
        self.connected = threading.Event()
        self.error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="ws-recorder", daemon=True)

    def start(self, timeout: float = 20) -> None:
        self._thread.start()
        if not self.connected.wait(timeout):
            raise TimeoutError(f"websocket did not connect within {timeout}s: {self.error!r}")
        if self.error:
            raise self.error

    def stop(self) -> None:
        if self._loop and self._stop and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:  # the loop closed meanwhile: the thread is ending anyway
                pass
        if self._thread.is_alive():
            self._thread.join(10)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by start() or after the run
            self.error = exc
            self.connected.set()

    async def _main(self) -> None:
        import websockets

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with websockets.connect(self.url, origin=self.origin, max_size=None,
                                      additional_headers={"Cookie": f"sessionid={self.session_key}"}) as ws:
            self.connected.set()
            stop_task = asyncio.create_task(self._stop.wait())
            while not self._stop.is_set():
                recv = asyncio.create_task(ws.recv())
                done, _ = await asyncio.wait({recv, stop_task}, return_when=asyncio.FIRST_COMPLETED)
                if recv not in done:
                    recv.cancel()
                    break
                now = time.time()
                self.frames += 1
                for pk in ROW_PK.findall(recv.result()):
                    self.arrivals.setdefault(int(pk), now)


def percentiles(values: list[float]) -> dict:
    if not values:
        return {}
    ordered = sorted(values)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]

    return {"count": len(values), "p50_ms": round(pct(50), 1), "p95_ms": round(pct(95), 1), "p99_ms": round(pct(99), 1),
            "max_ms": round(ordered[-1], 1), "mean_ms": round(statistics.fmean(values), 1)}


class LiveStack:
    """What a live benchmark runs against, started with the project's scripts and always removed.

    A fresh topic and PostgreSQL database (a migrated template's clone), staff sessions, and the
    servers of `args.mode`: daphne + `consume_demands` on the Redis channel layer (split), or
    `run_dashboard --no-demo` (embedded, in-memory layer). `close()` undoes every step that was
    taken, each on its own, so one failing leaves nothing else behind.
    """

    def __init__(self, args, *, run_tag: str, log_dir: Path, tag: str):
        self.args, self.run_tag, self.log_dir, self.tag = args, run_tag, log_dir, tag
        self.topic = f"bench-{tag}-{run_tag}"
        self.children: list[harness.Child] = []
        self.template = self.db = None
        self.topic_created = False
        self.port = 0
        self.session_keys: list[str] = []

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/demands/"

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def server(self) -> harness.Child:
        """The process serving the websockets (daphne, or run_dashboard in embedded modes)."""
        return self.children[0]

    def start(self, *, sessions: int = 1, server_env: dict | None = None) -> None:
        args = self.args
        if not args.no_services:
            subprocess.run([str(ROOT / "services" / "up.sh"), "kafka", "postgres", *(["redis"] if args.mode == "split" else [])],
                           check=True, timeout=300)
        create_topic(args.bootstrap, self.topic, 6)
        self.topic_created = True
        self.template = harness.PostgresTemplate(args.pg_server, f"{self.tag}{os.getpid()}")
        harness.manage("migrate", "--noinput", "-v", "0", database_url=self.template.url)
        self.db = self.template.fresh(self.tag)
        self.session_keys = staff_sessions(self.db.url, sessions)
        self.port = free_port()
        extra = {"KAFKA_TOPICS": self.topic, "KAFKA_DLQ_TOPIC": f"{self.topic}.dlq", "KAFKA_BOOTSTRAP_SERVERS": args.bootstrap,
                 "KAFKA_CONSUMER_GROUP": f"bench-{self.run_tag}"}
        if args.batch_size:
            extra["CONSUMER_BATCH_SIZE"] = str(args.batch_size)
        if args.batch_time:
            extra["CONSUMER_BATCH_TIMEOUT"] = str(args.batch_time)
        port = str(self.port)
        if args.mode == "split":
            env = harness.child_env(self.db.url, REDIS_URL=args.redis_url, **extra)
            self.children.append(harness.start("daphne", [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", port,
                                                          "unified_msg_site.asgi:application"],
                                               env={**env, **(server_env or {})}, log_dir=self.log_dir))
            consumer = [PYTHON, "manage.py", "consume_demands"]
            if args.persist != "ours" or args.async_commit:
                consumer = [PYTHON, "-m", "bench.run_consumer", "--topics", self.topic, "--group", extra["KAFKA_CONSUMER_GROUP"],
                            "--persist", args.persist, *(["--async-commit"] if args.async_commit else [])]
            self.children.append(harness.start("consumer", consumer, env=env, log_dir=self.log_dir))
        else:
            env = harness.child_env(self.db.url, **extra, **(server_env or {}))
            runner = [PYTHON, "manage.py", "run_dashboard"] if args.mode == "embedded" else [PYTHON, "-m", "bench.run_dashboard_fixed"]
            self.children.append(harness.start("run_dashboard", [*runner, "--no-demo", "--port", port], env=env, log_dir=self.log_dir))
        wait_for_port(self.port, 60, self.children)

    def check_children(self) -> None:
        for child in self.children:
            if child.proc.poll() is not None:
                raise RuntimeError(f"{child.name} exited with {child.proc.returncode}:\n{child.tail()}")

    def stored_rows(self) -> dict[int, tuple[str, float, str]]:
        """pk → (message id, received_at as a timestamp, type) of every stored demand."""
        with psycopg.connect(self.db.url) as conn:
            return {pk: (message_id, received_at.timestamp(), kind) for pk, message_id, received_at, kind in
                    conn.execute("SELECT id, message_id, received_at, type FROM demands_demand")}

    def close(self) -> None:
        cleanup = [
            *[(lambda c=child: harness.stop(c, grace=15)) for child in self.children],
            *([self.db._conn.close] if self.db is not None else []),
            *([self.template.drop] if self.template is not None else []),
            *([lambda: delete_topics(self.args.bootstrap, [self.topic, f"{self.topic}.dlq"])] if self.topic_created else []),
        ]
        for step in cleanup:
            try:
                step()
            except Exception as exc:
                log(f"warning: clean-up step failed: {exc!r}")


def make_producer(bootstrap: str) -> Producer:
    return Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})


def warm_up(stack: LiveStack, producer: Producer, rng, arrived, *, timeout: float = 60) -> None:
    """One demand must make the whole trip before timing starts (group join, first render).
    `arrived()` says whether it has reached the client(s)."""
    key, value = encode(bench_demand(rng, 0, f"{stack.run_tag}w"))
    producer.produce(stack.topic, value=value, key=key)
    producer.flush(10)
    deadline = time.monotonic() + timeout
    while not arrived() and time.monotonic() < deadline:
        stack.check_children()
        time.sleep(0.1)
    if not arrived():
        raise TimeoutError(f"the warm-up demand never reached the websocket in {timeout:g}s")


def produce_at_rate(stack: LiveStack, producer: Producer, rng, *, rate: float, seconds: float, progress=None) -> dict[str, float]:
    """Produce `rate`/s for `seconds`; message id → wall-clock time just before `produce()`.
    `progress(index, total)` returns a progress line, printed every 5 s."""
    produced: dict[str, float] = {}
    interval = 1.0 / rate
    total = int(rate * seconds)
    start = time.monotonic()
    last_report = start
    for index in range(1, total + 1):
        target = start + index * interval
        delay = target - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        demand = bench_demand(rng, index, stack.run_tag)
        key, value = encode(demand)
        produced[demand["id"]] = time.time()
        producer.produce(stack.topic, value=value, key=key)
        producer.poll(0)
        now = time.monotonic()
        if now - last_report >= 5:
            stack.check_children()
            log(f"  produced {index:,}/{total:,}" + (f", {progress()}" if progress else ""))
            last_report = now
    producer.flush(10)
    return produced


def main(argv=None) -> int:
    import random

    args = parse_args(argv)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_tag = f"l{time.strftime('%m%d%H%M%S')}"
    output = args.output or RESULTS / f"live-latency-{stamp}.json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    stack = LiveStack(args, run_tag=run_tag, log_dir=RESULTS / f"live-latency-{stamp}-logs", tag="live")
    recorder = None
    report: dict = {"benchmark": "live_latency", "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, "topic": stack.topic}

    def interrupt(_signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        stack.start()
        recorder = WebsocketRecorder(stack.ws_url, stack.session_keys[0], stack.origin)
        recorder.start()
        log(f"{args.mode}: daphne on :{stack.port}, websocket connected; waiting for the consumer to join its group")

        producer = make_producer(args.bootstrap)
        rng = random.Random(2)
        warm_up(stack, producer, rng, lambda: bool(recorder.arrivals))
        warm = set(recorder.arrivals)
        log(f"warm-up row arrived; producing {args.rate:g}/s for {args.seconds:g}s")

        spy = None
        profile_path = RESULTS / f"profile-live-consumer-{stamp}.txt"
        if args.profile and args.mode == "split":
            spy = subprocess.Popen([harness.tool("py-spy"), "record", "-p", str(stack.children[1].pid), "-o", str(profile_path),
                                    "--format", "raw", "--rate", "200", "--idle", "--nonblocking"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        total = int(args.rate * args.seconds)
        start = time.monotonic()
        produced = produce_at_rate(stack, producer, rng, rate=args.rate, seconds=args.seconds,
                                   progress=lambda: f"rows received {len(recorder.arrivals) - len(warm):,}")
        report["produce_seconds"] = round(time.monotonic() - start, 2)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait(5)
        drain_until = time.monotonic() + args.drain
        while len(recorder.arrivals) - len(warm) < total and time.monotonic() < drain_until:
            time.sleep(0.2)
        recorder.stop()
        stats = [c.stats() for c in stack.children]
        rows = stack.stored_rows()
        # received_at is stamped when the consumer starts the batch: it splits the trip in two.
        latencies, to_consumer, consumer_to_browser = [], [], []
        for pk, arrived in recorder.arrivals.items():
            message_id, batch_started, _type = rows.get(pk, (None, None, None))
            if message_id in produced:
                latencies.append((arrived - produced[message_id]) * 1000)
                to_consumer.append((batch_started - produced[message_id]) * 1000)
                consumer_to_browser.append((arrived - batch_started) * 1000)
        report.update({
            "produced": total, "stored": len([m for m, _, _ in rows.values() if m in produced]),
            "received": len(latencies), "frames": recorder.frames, "latency": percentiles(latencies),
            "produce_to_batch_start": percentiles(to_consumer), "batch_start_to_browser": percentiles(consumer_to_browser),
            "processes": {c.name: s for c, s in zip(stack.children, stats)},
        })
        lat = report["latency"]
        print()
        print(f"live latency ({args.mode}, {args.rate:g}/s for {args.seconds:g}s, consumer batch time "
              f"{args.batch_time or 'default'}, persist {args.persist}{', async commit' if args.async_commit else ''}):")
        print(f"  produced {total:,}, stored {report['stored']:,}, received on the websocket {len(latencies):,} "
              f"in {recorder.frames:,} frames")
        if lat:
            print(f"  produce → received: p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms, p99 {lat['p99_ms']} ms, "
                  f"max {lat['max_ms']} ms   (targets p50 ≤ 30, p99 ≤ 100)")
            for name, label in (("produce_to_batch_start", "produce → consumer batch starts"),
                                ("batch_start_to_browser", "batch starts → websocket (persist, render, send)")):
                part = report[name]
                print(f"    {label:50} p50 {part['p50_ms']} ms, p95 {part['p95_ms']} ms, p99 {part['p99_ms']} ms")
        if spy is not None and profile_path.exists():
            from bench.pyspy_summary import format_summary, summarize

            breakdown = summarize(profile_path)
            report["profile"] = {"file": str(profile_path.relative_to(ROOT)), "breakdown": breakdown}
            print(f"\n  consumer profile while producing ({profile_path.relative_to(ROOT)}; µs per demand at {args.rate:g}/s):")
            print(format_summary(breakdown, rate=args.rate))
        return 0 if lat else 1
    except KeyboardInterrupt:
        log("interrupted: stopping what was started")
        return 130
    finally:
        # Each step on its own: one failing must not leave processes, databases or topics behind.
        if recorder is not None:
            try:
                recorder.stop()
            except Exception as exc:
                log(f"warning: clean-up step failed: {exc!r}")
        stack.close()
        if "latency" in report:
            output.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str))
            log(f"wrote {output}")


if __name__ == "__main__":
    sys.exit(main())
