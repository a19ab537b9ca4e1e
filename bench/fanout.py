"""Fan-out (issue 6 §4): many staff websockets on one daphne process while demands arrive.

Starts the same stack as bench.live_latency (`LiveStack`): a fresh topic and PostgreSQL database,
and by default the production shape — one daphne process serving `unified_msg_site.asgi` and a
separate `consume_demands`, both on the Redis channel layer (REDIS_URL) — or, with
`--mode embedded`, `run_dashboard --no-demo` (daphne + consume loop in one process, in-memory
layer). Then `--clients` websockets connect to /ws/demands/ with staff session cookies and the
Origin header, as the list page does (spread over `--client-procs` processes, each one asyncio
loop with a sans-I/O `websockets` client per connection), and demands are produced at `--rate`
per second for `--seconds`. Every `<tr id="demand-<pk>"` each client receives is timed;
pk → message id → produce time gives the delivery latency of every (client, demand) pair.

Clients alternate English and Chinese (Accept-Language) across `--users` staff users, and
`--filtered` of them watch a page filtered by type, so the server does per-language and
per-filter work as with real staff; a filtered client expects only the rows of its type.

    python -m bench.fanout [--clients 1000] [--rate 50] [--seconds 60] [--mode split|embedded]
                           [--client-procs 2] [--profile]

Reports delivery latency p50/p95/p99/max over all pairs, missed and unexpected deliveries,
connection set-up time, the server's RSS (VmRSS, VmHWM) before and after the clients connect and
at the end, and the CPU of the server, the consumer and the client processes — which share the
machine's cores with the server. Writes bench/results/fanout-<timestamp>.json. Target (issue 6):
p99 ≤ 500 ms with 1,000 clients at 50/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import re
import resource
import signal
import subprocess
import sys
import time
from array import array
from collections import Counter
from pathlib import Path

from bench import harness
from bench.harness import RESULTS, ROOT, log
from bench.live_latency import LiveStack, add_stack_arguments, make_producer, percentiles, produce_at_rate, warm_up

ROW_PK = re.compile(rb'<tr id="demand-(\d+)"')
LANGUAGES = ("en", "zh-hans")
TYPES = ("user_feedback", "log_exception", "api_anomaly", "feature_request")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000, help="websocket connections to /ws/demands/")
    parser.add_argument("--rate", type=float, default=50, help="demands produced per second")
    parser.add_argument("--seconds", type=float, default=60, help="how long to produce")
    parser.add_argument("--drain", type=float, default=30, help="at most this many seconds for the last rows to arrive")
    parser.add_argument("--client-procs", type=int, default=2, help="processes the clients are spread over")
    parser.add_argument("--connect-concurrency", type=int, default=25, help="handshakes in flight per client process")
    parser.add_argument("--users", type=int, default=10, help="staff users the clients log in as")
    parser.add_argument("--filtered", type=float, default=0.2, help="share of clients on a page filtered by type")
    parser.add_argument("--settle", type=float, default=5, help="seconds idle after connecting, before the idle RSS")
    parser.add_argument("--profile", action="store_true", help="py-spy the server process while producing")
    add_stack_arguments(parser, modes=("split", "embedded"))
    parser.add_argument("--output", type=Path)
    return parser.parse_args(argv)


def raise_fd_limit(wanted: int) -> int:
    """Soft RLIMIT_NOFILE up to `wanted` (at most the hard limit); children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / harness.CLOCK_TICKS
    except (OSError, IndexError):
        return None


def memory_mb(pid: int) -> dict:
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return out


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all cores, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# -- the clients: one process, one asyncio loop, many sans-I/O websocket connections ----------------
class RowClient(asyncio.Protocol):
    """One websocket: the handshake with cookie and Origin, then every row's pk and arrival time."""

    def __init__(self, url: str, origin: str, session_key: str, language: str, query: str, unfiltered: bool):
        from websockets.client import ClientProtocol
        from websockets.typing import Origin
        from websockets.uri import parse_uri

        self.uri = parse_uri(f"{url}?{query}" if query else url)
        self.ws = ClientProtocol(self.uri, origin=Origin(origin), max_size=None)
        self.session_key, self.language, self.query, self.unfiltered = session_key, language, query, unfiltered
        self.pks = array("q")
        self.times = array("d")
        self.frames = 0
        self.more_frames = 0
        self.newest = 0  # the newest pk shown: what a resume request asks to go beyond
        self.fragments: list[bytes] = []
        self.transport = None
        self.opened: asyncio.Future = asyncio.get_running_loop().create_future()
        self.closed = False
        self.close_code = None

    def connection_made(self, transport):
        self.transport = transport
        request = self.ws.connect()
        request.headers["Cookie"] = f"sessionid={self.session_key}"
        request.headers["Accept-Language"] = self.language
        self.ws.send_request(request)
        self._flush()

    def data_received(self, data: bytes) -> None:
        from websockets.frames import Frame, Opcode
        from websockets.http11 import Response
        from websockets.protocol import State

        now = time.time()
        self.ws.receive_data(data)
        for event in self.ws.events_received():
            if isinstance(event, Frame):
                if event.opcode in (Opcode.TEXT, Opcode.CONT):
                    self.fragments.append(bytes(event.data))
                    if event.fin:
                        self._frame(b"".join(self.fragments), now)
                        self.fragments.clear()
            elif isinstance(event, Response) and not self.opened.done():
                if self.ws.state is State.OPEN:
                    self.opened.set_result(now)
                else:
                    self.opened.set_exception(ConnectionError(f"handshake refused: HTTP {event.status_code}"))
        self._flush()

    def _frame(self, payload: bytes, now: float) -> None:
        self.frames += 1
        newest_before = self.newest
        for pk in ROW_PK.findall(payload):
            pk = int(pk)
            self.pks.append(pk)
            self.times.append(now)
            if pk > self.newest:
                self.newest = pk
        if b"data-more" in payload[:60]:
            # As the page does (static/js/app.js): the server sent only the newest rows of a
            # burst; ask for everything after what was shown before this frame.
            self.more_frames += 1
            self.send_text(json.dumps({"resume_after": newest_before}))

    def send_text(self, text: str) -> None:
        self.ws.send_text(text.encode())
        self._flush()

    def _flush(self) -> None:
        for data in self.ws.data_to_send():
            if data:
                self.transport.write(data)
            elif self.transport.can_write_eof():
                self.transport.write_eof()

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.close_code = getattr(self.ws.close_rcvd, "code", None)
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed during the handshake: {exc!r}"))


def client_worker(control, url: str, origin: str, specs: list[tuple], concurrency: int, fd_limit: int) -> None:
    """A client process: connects its share of the sockets, then answers the bench's requests."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the bench stops us; Ctrl-C is its to handle
    raise_fd_limit(fd_limit)
    asyncio.run(_client_main(control, url, origin, specs, concurrency))


async def _client_main(control, url: str, origin: str, specs: list[tuple], concurrency: int) -> None:
    loop = asyncio.get_running_loop()
    requests: asyncio.Queue = asyncio.Queue()

    def on_request() -> None:
        try:
            requests.put_nowait(control.recv())
        except (EOFError, OSError):  # the bench is gone: stop
            loop.remove_reader(control.fileno())
            requests.put_nowait("exit")

    loop.add_reader(control.fileno(), on_request)
    clients = [RowClient(url, origin, *spec) for spec in specs]
    gate = asyncio.Semaphore(concurrency)

    async def open_one(client: RowClient) -> float:
        async with gate:
            started = time.monotonic()
            await loop.create_connection(lambda: client, client.uri.host, client.uri.port)
            await asyncio.wait_for(client.opened, 30)
            # As the list page does whenever its socket opens: catch up after what it shows.
            client.send_text(json.dumps({"resume_after": 0}))
            return time.monotonic() - started

    started = time.monotonic()
    results = await asyncio.gather(*(open_one(c) for c in clients), return_exceptions=True)
    setup = [r for r in results if isinstance(r, float)]
    errors = Counter(repr(r)[:200] for r in results if not isinstance(r, float))
    control.send({"setup_s": setup, "wall_s": time.monotonic() - started, "errors": dict(errors)})
    while True:
        command = await requests.get()
        if command == "count":
            control.send({"rows": sum(len(c.pks) for c in clients), "frames": sum(c.frames for c in clients),
                          "unfiltered_with_rows": sum(1 for c in clients if c.unfiltered and c.pks),
                          "closed": sum(1 for c in clients if c.closed)})
        elif command == "exit":
            return
        elif command == "stop":
            usage = resource.getrusage(resource.RUSAGE_SELF)
            control.send({"connections": [(c.query, c.language, c.pks, c.times, c.frames, c.more_frames, c.closed, c.close_code)
                                          for c in clients],
                          "cpu_s": usage.ru_utime + usage.ru_stime})
            for client in clients:
                if client.transport is not None:
                    client.transport.abort()
            return


class ClientPool:
    """`procs` client processes; every call to them has a timeout."""

    def __init__(self, url: str, origin: str, specs: list[tuple], procs: int, concurrency: int, fd_limit: int):
        context = multiprocessing.get_context("spawn")
        self.workers = []
        for index in range(procs):
            share = specs[index::procs]
            if not share:
                continue
            parent, child = context.Pipe()
            proc = context.Process(target=client_worker, args=(child, url, origin, share, concurrency, fd_limit),
                                   name=f"fanout-clients-{index}", daemon=True)
            proc.start()
            child.close()
            self.workers.append((proc, parent))

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc, _ in self.workers]

    def _receive(self, conn, timeout: float):
        if not conn.poll(timeout):
            raise TimeoutError(f"a client process did not answer within {timeout:g}s")
        return conn.recv()

    def connected(self, timeout: float) -> list[dict]:
        deadline = time.monotonic() + timeout
        return [self._receive(conn, max(0.1, deadline - time.monotonic())) for _, conn in self.workers]

    def ask(self, command: str, timeout: float = 30) -> list[dict]:
        for _, conn in self.workers:
            conn.send(command)
        return [self._receive(conn, timeout) for _, conn in self.workers]

    def count(self) -> dict:
        answers = self.ask("count")
        return {key: sum(a[key] for a in answers) for key in answers[0]}

    def close(self) -> None:
        for proc, conn in self.workers:
            conn.close()
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)


def client_specs(count: int, sessions: list[str], filtered: float) -> list[tuple]:
    """(session key, language, query, unfiltered) for each client: languages alternate, users
    rotate, and every n-th client (n = 1/filtered) watches one type."""
    specs = []
    step = round(1 / filtered) if filtered > 0 else 0
    filtered_index = 0
    for index in range(count):
        query = ""
        if step and index % step == step - 1:
            query = f"type={TYPES[filtered_index % len(TYPES)]}"
            filtered_index += 1
        specs.append((sessions[index % len(sessions)], LANGUAGES[index % len(LANGUAGES)], query, not query))
    return specs


# -- the server's profile ---------------------------------------------------------------------------
SERVER_RULES = [  # first match wins; every stack runs under Twisted's reactor and asyncio's loop
    ("idle: event loop waiting (epoll)", lambda s, leaf: leaf.startswith(("EpollSelector.select", "select (selectors.py"))),
    ("fan-out round: frames for each socket (channels → daphne → autobahn → Twisted write)",
     lambda s, leaf: "ListFanout._send" in s),
    ("channel layer: InMemory group_send (deepcopy per channel)", lambda s, leaf: "deepcopy" in s or "(copy.py" in s),
    ("channel layer: Redis pub/sub receive + msgpack", lambda s, leaf: "channels_redis" in s or "msgpack" in s),
    ("socket writes (Twisted doWrite: send(), epoll (un)register)", lambda s, leaf: "doWrite" in s or "_readOrWrite" in s),
    ("per-socket handlers: demands_created (filter, language, wrap, send)", lambda s, leaf: "demands_created (demands/consumers.py" in s),
    ("per-socket: channels close_old_connections hop", lambda s, leaf: "aclose_old_connections" in s),
    ("socket connect / resume (database)", lambda s, leaf: "connect (demands/consumers.py" in s or "receive (demands/consumers.py" in s),
    ("channels: per-socket dispatch (await_many_dispatch, handlers)", lambda s, leaf: "channels/" in s),
    ("daphne: protocol, application checker", lambda s, leaf: "daphne/" in s),
    ("asyncio: tasks, futures, queues, executor hand-offs", lambda s, leaf: "asyncio/" in s),
]


def summarize_server_profile(path: Path) -> dict:
    """Shares of the event loop thread's samples (py-spy --threads --idle, raw): category → share,
    plus the functions with the most samples of their own."""
    threads: dict[str, Counter] = {}
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        thread, _, rest = stack.partition(";")
        threads.setdefault(thread, Counter())[rest] += int(count)
    # The event loop's thread is the one running asyncio's run_forever (daphne's reactor).
    loop_thread = max(threads, key=lambda t: sum(n for s, n in threads[t].items() if "run_forever" in s), default=None)
    if loop_thread is None:
        return {}
    stacks = threads[loop_thread]
    total = sum(stacks.values())
    categories: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for stack, samples in stacks.items():
        leaf = stack.rsplit(";", 1)[-1]
        leaves[leaf] += samples
        categories[next((name for name, test in SERVER_RULES if test(stack, leaf)), "other")] += samples
    return {"thread": loop_thread, "samples": total,
            "categories": [{"category": name, "share": round(n / total, 4)} for name, n in categories.most_common()],
            "top_functions": [{"function": name, "share": round(n / total, 4)} for name, n in leaves.most_common(15)]}


# -- the run ----------------------------------------------------------------------------------------
def main(argv=None) -> int:
    args = parse_args(argv)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_tag = f"f{time.strftime('%m%d%H%M%S')}"
    output = args.output or RESULTS / f"fanout-{stamp}.json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    # Each socket is a descriptor in the server and in a client process (and a few for the rest).
    fd_limit = raise_fd_limit(max(4096, args.clients * 2 + 1024))
    stack = LiveStack(args, run_tag=run_tag, log_dir=RESULTS / f"fanout-{stamp}-logs", tag="fanout")
    pool = spy = None
    report: dict = {"benchmark": "fanout", "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "loadavg_start": loadavg(),
                    "cores": os.cpu_count(), "fd_limit": fd_limit,
                    "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, "topic": stack.topic}

    def interrupt(_signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        log(f"load average {loadavg()}; starting the {args.mode} stack")
        stack.start(sessions=max(1, args.users))
        server = stack.server
        consumer = stack.children[1] if len(stack.children) > 1 else None
        time.sleep(1)
        report["server_rss_no_clients"] = memory_mb(server.pid)
        specs = client_specs(args.clients, stack.session_keys, args.filtered)
        log(f"{server.name} (pid {server.pid}) on :{stack.port}, RSS {report['server_rss_no_clients']}; "
            f"connecting {args.clients:,} websockets from {args.client_procs} client processes")
        connect_started = time.monotonic()
        pool = ClientPool(stack.ws_url, stack.origin, specs, args.client_procs, args.connect_concurrency, fd_limit)
        answers = pool.connected(timeout=120 + args.clients * 0.2)
        setup = [s * 1000 for a in answers for s in a["setup_s"]]
        errors = Counter()
        for answer in answers:
            errors.update(answer["errors"])
        report["connect"] = {"connected": len(setup), "failed": sum(errors.values()), "errors": dict(errors),
                             "wall_s": round(time.monotonic() - connect_started, 2),
                             "handshake": percentiles(setup)}
        log(f"  {len(setup):,} connected, {sum(errors.values())} failed, in {report['connect']['wall_s']} s "
            f"(handshake p50 {report['connect']['handshake'].get('p50_ms')} ms, "
            f"p99 {report['connect']['handshake'].get('p99_ms')} ms)")
        if errors:
            log(f"  connection errors: {dict(errors)}")
        time.sleep(args.settle)
        report["server_rss_idle"] = memory_mb(server.pid)
        log(f"  idle with {len(setup):,} clients: {server.name} RSS {report['server_rss_idle']}, load {loadavg()}")

        producer = make_producer(args.bootstrap)
        rng = random.Random(4)
        unfiltered = sum(1 for spec in specs if spec[3])
        warm_up(stack, producer, rng, lambda: pool.count()["unfiltered_with_rows"] >= unfiltered, timeout=90)
        warm = pool.count()
        log(f"warm-up row reached every unfiltered client; producing {args.rate:g}/s for {args.seconds:g}s")

        profile_path = RESULTS / f"profile-fanout-{args.mode}-{stamp}.txt"
        if args.profile:
            spy = subprocess.Popen([harness.tool("py-spy"), "record", "-p", str(server.pid), "-o", str(profile_path),
                                    "--format", "raw", "--rate", "200", "--idle", "--threads", "--nonblocking",
                                    "--duration", str(int(args.seconds))],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        pids = {"server": server.pid, **({"consumer": consumer.pid} if consumer else {}),
                **{f"clients-{i}": pid for i, pid in enumerate(pool.pids)}}
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        busy_before = machine_busy()
        started = time.monotonic()
        produced = produce_at_rate(stack, producer, rng, rate=args.rate, seconds=args.seconds,
                                   progress=lambda: (lambda c: f"rows on the clients {c['rows'] - warm['rows']:,}, "
                                                               f"{stack.server.name} RSS {memory_mb(server.pid).get('VmRSS')} MB, "
                                                               f"load {loadavg()}")(pool.count()))
        window = time.monotonic() - started
        cpu_after = {name: cpu_seconds(pid) for name, pid in pids.items()}
        busy_after = machine_busy()
        report["loadavg_end_of_produce"] = loadavg()
        report["produce_seconds"] = round(window, 2)
        report["cpu_while_producing"] = {
            name: {"cpu_s": round(cpu_after[name] - cpu_before[name], 2),
                   "cores": round((cpu_after[name] - cpu_before[name]) / window, 2)}
            for name in pids if cpu_before[name] is not None and cpu_after[name] is not None}
        report["machine_busy_share"] = round((busy_after[0] - busy_before[0]) / max(1, busy_after[1] - busy_before[1]), 3)

        # Drain: until every client has every row it should get, or --drain seconds.
        rows = stack.stored_rows()
        ours = {pk: (message_id, kind, batch) for pk, (message_id, batch, kind) in rows.items() if message_id in produced}
        by_type = Counter(row[1] for row in ours.values())
        expected_total = sum(len(ours) if spec[3] else by_type[spec[2].split("=", 1)[1]] for spec in specs)
        drain_until = time.monotonic() + args.drain
        last_report = time.monotonic()
        while time.monotonic() < drain_until:
            got = pool.count()["rows"] - warm["rows"]
            if got >= expected_total and len(ours) == len(produced):
                break
            if time.monotonic() - last_report >= 5:
                log(f"  draining: {got:,}/{expected_total:,} (client, demand) rows arrived")
                last_report = time.monotonic()
            time.sleep(0.5)
            if len(ours) < len(produced):  # the consumer may still be storing the last ones
                rows = stack.stored_rows()
                ours = {pk: (m, k, b) for pk, (m, b, k) in rows.items() if m in produced}
                by_type = Counter(row[1] for row in ours.values())
                expected_total = sum(len(ours) if spec[3] else by_type[spec[2].split("=", 1)[1]] for spec in specs)
        report["server_rss_end"] = memory_mb(server.pid)
        report["processes"] = {c.name: c.stats() for c in stack.children}
        if spy is not None:
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.send_signal(signal.SIGINT)
                spy.wait(15)
        answers = pool.ask("stop", timeout=120)
        report["cpu_clients_total_s"] = round(sum(a["cpu_s"] for a in answers), 2)

        # Every (client, demand) pair: latency, and what was missed or should not have come.
        latencies: list[float] = []
        server_part: list[float] = []  # the consumer's batch start (received_at) → the client
        by_second: dict[int, list[float]] = {}
        missed = unexpected = duplicates = frames = more_frames = closed = 0
        close_codes: Counter = Counter()
        first_produced = min(produced.values())
        for answer in answers:
            for query, _language, pks, times, n_frames, n_more, was_closed, close_code in answer["connections"]:
                frames += n_frames
                more_frames += n_more
                closed += bool(was_closed)
                if was_closed:
                    close_codes[close_code] += 1
                wanted_type = query.split("=", 1)[1] if query else None
                seen = set()
                for pk, arrived in zip(pks, times):
                    row = ours.get(pk)
                    if row is None:
                        continue  # the warm-up demand
                    if pk in seen:
                        duplicates += 1
                        continue
                    seen.add(pk)
                    if wanted_type and row[1] != wanted_type:
                        unexpected += 1
                        continue
                    sent = produced[row[0]]
                    latency = (arrived - sent) * 1000
                    latencies.append(latency)
                    server_part.append((arrived - row[2]) * 1000)
                    by_second.setdefault(int((sent - first_produced) // 10), []).append(latency)
                missed += sum(1 for pk, row in ours.items() if (not wanted_type or row[1] == wanted_type) and pk not in seen)
        report.update({
            "produced": len(produced), "stored": len(ours), "pairs_expected": expected_total, "pairs_received": len(latencies),
            "missed": missed, "unexpected": unexpected, "duplicates": duplicates, "frames": frames,
            "frames_with_more": more_frames, "closed_during_run": closed, "close_codes": {str(k): v for k, v in close_codes.items()},
            "latency": percentiles(latencies),
            "produce_to_batch_start": percentiles([(row[2] - produced[row[0]]) * 1000 for row in ours.values()]),
            "batch_start_to_client": percentiles(server_part),
            "latency_by_10s_of_producing": {f"{k * 10}-{k * 10 + 10}s": percentiles(v) for k, v in sorted(by_second.items())},
            "loadavg_end": loadavg(),
        })
        if spy is not None and profile_path.exists():
            report["profile"] = {"file": str(profile_path.relative_to(ROOT)), **summarize_server_profile(profile_path)}
        print_report(args, report, stack)
        return 0 if latencies else 1
    except KeyboardInterrupt:
        log("interrupted: stopping what was started")
        return 130
    finally:
        for step in ([lambda: spy.poll() is None and spy.kill()] if spy is not None else []) + \
                    ([pool.close] if pool is not None else []) + [stack.close]:
            try:
                step()
            except Exception as exc:
                log(f"warning: clean-up step failed: {exc!r}")
        if "latency" in report:
            output.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str))
            log(f"wrote {output}")


def print_report(args, report: dict, stack: LiveStack) -> None:
    lat, conn = report["latency"], report["connect"]
    server = stack.server.name
    print()
    print(f"fan-out ({args.mode}: {'one daphne + consume_demands, Redis layer' if args.mode == 'split' else 'run_dashboard, in-memory layer'}); "
          f"{conn['connected']:,} clients, {args.rate:g}/s for {args.seconds:g}s")
    print(f"  the {report['cores']} cores are shared: server, consumer, Kafka, PostgreSQL, Redis and the "
          f"{args.client_procs} client processes all run on them. Load average: start {report['loadavg_start']}, "
          f"end {report['loadavg_end']}")
    print(f"  produced {report['produced']:,}, stored {report['stored']:,}; (client, demand) rows expected "
          f"{report['pairs_expected']:,}, received {report['pairs_received']:,}, missed {report['missed']:,}, "
          f"unexpected {report['unexpected']}, again after a resume {report['duplicates']:,}, in {report['frames']:,} frames "
          f"({report['frames_with_more']:,} with data-more)")
    if lat:
        print(f"  delivery latency: p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms, p99 {lat['p99_ms']} ms, "
              f"max {lat['max_ms']} ms   (target p99 ≤ 500 ms)")
        for name, label in (("produce_to_batch_start", "produce → consumer batch starts (per demand)"),
                            ("batch_start_to_client", "batch starts → client (persist, render, fan-out, client)")):
            part = report[name]
            print(f"    {label:58} p50 {part['p50_ms']} ms, p95 {part['p95_ms']} ms, p99 {part['p99_ms']} ms")
        print("  p99 by when the demand was produced: " + ", ".join(
            f"{window} {part['p99_ms']:g}" for window, part in report["latency_by_10s_of_producing"].items()))
    hs = conn["handshake"]
    print(f"  connection set-up: {conn['connected']:,} in {conn['wall_s']} s, {conn['failed']} failed; handshake "
          f"(TCP + upgrade + auth + accept) p50 {hs.get('p50_ms')} ms, p99 {hs.get('p99_ms')} ms, max {hs.get('max_ms')} ms")
    print(f"  {server} memory MB: before clients {report['server_rss_no_clients']}, idle with clients "
          f"{report['server_rss_idle']}, end {report['server_rss_end']}")
    cpu = report["cpu_while_producing"]
    print("  CPU while producing (cores busy): " + ", ".join(f"{name} {v['cores']}" for name, v in cpu.items())
          + f"; the whole machine {report['machine_busy_share'] * 100:.0f} % busy")
    if report.get("closed_during_run"):
        print(f"  sockets closed during the run: {report['closed_during_run']} (codes {report['close_codes']})")
    if "profile" in report and report["profile"].get("categories"):
        print(f"\n  {server}'s event-loop thread while producing ({report['profile']['file']}, {report['profile']['samples']} samples):")
        for row in report["profile"]["categories"]:
            print(f"    {row['category']:62} {row['share'] * 100:5.1f} %")
        print("    functions with the most samples of their own:")
        for row in report["profile"]["top_functions"][:10]:
            print(f"      {row['share'] * 100:5.1f} %  {row['function']}")


if __name__ == "__main__":
    sys.exit(main())
