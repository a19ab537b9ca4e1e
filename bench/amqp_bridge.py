"""RabbitMQ → Kafka through `manage.py bridge_amqp`, against producing to Kafka directly.

    services/up.sh kafka rabbitmq
    .venv/bin/python -m bench.amqp_bridge [--messages 100000] [--prefetch 500,2000] [--linger-ms 5,20] [--processes 1,2,3]

Each row forwards the same reference-format demands (~200 bytes) to a fresh topic:

- kafka direct: `demands.kafka.make_producer(acks=all)` in this process, every record keyed by
  source:id, timed from the first produce() to the last delivery report (flush).
- bridge, drain: the queue is filled first (persistent messages, publisher confirms), then a
  bridge subprocess is started; timed from its first record in Kafka to the last. Acks go out
  only after Kafka confirmed, so the queue is empty and the bridge's consumer gone at the end.
- bridge, live: the bridge runs; the publisher sends with confirms while it forwards; timed from
  the first publish to the last record in Kafka (end to end).

The bridge's RSS is its peak (VmHWM) from /proc. Topics and queues made here are deleted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "unified_msg_site.settings")
django.setup()

import pika  # noqa: E402
import pika.exceptions  # noqa: E402
from confluent_kafka import Consumer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from django.conf import settings  # noqa: E402

from demands.kafka import make_producer, produce_demand  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PARTITIONS = 3
logging_pika = __import__("logging").getLogger("pika")
logging_pika.setLevel(50)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def bodies(count: int, run: str) -> list[bytes]:
    return [
        json.dumps({"id": f"{run}-{i:07d}", "type": "user_feedback", "content": "页面加载太慢,请优化。",
                    "timestamp": "2025-04-05T10:30:00Z", "source": "web_app"}, ensure_ascii=False).encode()
        for i in range(count)
    ]


# -- Kafka ----------------------------------------------------------------------------------------
def kafka_config() -> dict:
    return dict(settings.KAFKA_CLIENT_CONFIG)


def new_topic() -> str:
    name = f"amqp-bench-{uuid.uuid4().hex[:10]}"
    admin = AdminClient(kafka_config())
    for future in admin.create_topics([NewTopic(name, num_partitions=PARTITIONS)]).values():
        future.result(timeout=30)
    return name


def delete_topic(name: str) -> None:
    admin = AdminClient(kafka_config())
    for future in admin.delete_topics([name], operation_timeout=10).values():
        try:
            future.result(timeout=15)
        except Exception:
            pass


class Watermarks:
    def __init__(self, topic: str):
        self.topic = topic
        self.consumer = Consumer({**kafka_config(), "group.id": f"bench-{uuid.uuid4().hex[:6]}"})

    def total(self) -> int:
        return sum(self.consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10, cached=False)[1]
                   for p in range(PARTITIONS))

    def close(self):
        self.consumer.close()


def kafka_direct(payloads: list[bytes], *, linger_ms: float) -> tuple[float, float]:
    """The product's own produce path (`produce_demand`: JSON-encode, key source:id, produce),
    flushed: (seconds, CPU seconds of this process)."""
    topic = new_topic()
    demands = [json.loads(body) for body in payloads]
    try:
        producer = make_producer(**{"acks": "all", "linger.ms": linger_ms})
        failed = []

        def on_delivery(error, _message):
            if error is not None:
                failed.append(error)

        started, cpu = time.perf_counter(), time.process_time()
        for demand in demands:
            produce_demand(producer, demand, topic=topic, on_delivery=on_delivery)
        assert producer.flush(60) == 0 and not failed, failed[:3]
        return time.perf_counter() - started, time.process_time() - cpu
    finally:
        delete_topic(topic)


# -- RabbitMQ -------------------------------------------------------------------------------------
class ConfirmedPublisher:
    """Persistent messages with publisher confirms, `window` unconfirmed at most (SelectConnection:
    confirms arrive asynchronously, with `multiple`)."""

    def __init__(self, url: str, queue: str, payloads: list[bytes], *, window: int = 2000):
        self.url, self.queue, self.payloads, self.window = url, queue, payloads, window
        self.sent = 0
        self.unconfirmed: set[int] = set()
        self.nacked = 0
        self.error: BaseException | None = None
        self.properties = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent, content_type="application/json")
        self.elapsed = 0.0

    def run(self) -> float:
        started = time.perf_counter()
        self.connection = pika.SelectConnection(
            pika.URLParameters(self.url), on_open_callback=self._on_open,
            on_open_error_callback=self._on_error, on_close_callback=self._on_closed)
        self.connection.ioloop.start()
        if self.error:
            raise self.error
        assert self.nacked == 0, f"{self.nacked} messages nacked by the broker"
        self.elapsed = time.perf_counter() - started
        return self.elapsed

    def _on_error(self, _connection, error):
        self.error = error if isinstance(error, BaseException) else RuntimeError(str(error))
        self.connection.ioloop.stop()

    def _on_closed(self, _connection, reason):
        if self.sent < len(self.payloads) or self.unconfirmed:
            self.error = RuntimeError(f"connection closed early: {reason}")
        self.connection.ioloop.stop()

    def _on_open(self, connection):
        connection.channel(on_open_callback=self._on_channel)

    def _on_channel(self, channel):
        self.channel = channel
        channel.queue_declare(self.queue, durable=True,
                              callback=lambda _frame: channel.confirm_delivery(self._on_confirm, callback=lambda _f: self._more()))

    def _more(self):
        while self.sent < len(self.payloads) and len(self.unconfirmed) < self.window:
            self.channel.basic_publish("", self.queue, self.payloads[self.sent], self.properties)
            self.sent += 1
            self.unconfirmed.add(self.sent)  # delivery tags count from 1 on a confirming channel
        if self.sent == len(self.payloads) and not self.unconfirmed:
            self.connection.close()

    def _on_confirm(self, frame):
        method = frame.method
        if isinstance(method, pika.spec.Basic.Nack):
            self.nacked += 1
        if method.multiple:
            self.unconfirmed = {tag for tag in self.unconfirmed if tag > method.delivery_tag}
        else:
            self.unconfirmed.discard(method.delivery_tag)
        self._more()


def queue_state(url: str, queue: str) -> tuple[int, int]:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        ok = connection.channel().queue_declare(queue, passive=True).method
        return ok.message_count, ok.consumer_count
    finally:
        connection.close()


def delete_queue(url: str, queue: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        connection.channel().queue_delete(queue)
    finally:
        connection.close()


# -- the bridge -----------------------------------------------------------------------------------
class BridgeProcess:
    def __init__(self, *, url: str, queue: str, topic: str, prefetch: int, linger_ms: float, log_path: Path, processes: int = 1):
        args = [sys.executable, "manage.py", "bridge_amqp", "--url", url, "--queues", queue, "--topic", topic,
                "--prefetch", str(prefetch), "--linger-ms", str(linger_ms), "--stats-interval", "5",
                "--processes", str(processes)]
        self.log_path = log_path
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "INFO"}
        with open(log_path, "w") as out:
            self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)

    def pids(self) -> list[int]:
        """The bridge and its worker processes (--processes N forks them)."""
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                return [self.proc.pid] + [int(pid) for pid in f.read().split()]
        except OSError:
            return [self.proc.pid]

    def cpu_seconds(self) -> float:
        total = 0.0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
        return total

    def peak_rss_mb(self) -> float:
        """Peak RSS (VmHWM) summed over the bridge's processes (pages shared after fork count twice)."""
        total = 0.0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/status") as f:
                    total += next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
            except (OSError, StopIteration):
                continue
        return total

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(interval)


def bridge_run(url: str, payloads: list[bytes], *, prefetch: int, linger_ms: float, live: bool, log_dir: Path,
               processes: int = 1) -> dict:
    topic, queue = new_topic(), f"bench-{uuid.uuid4().hex[:8]}"
    marks = Watermarks(topic)
    bridge = None
    try:
        publisher = ConfirmedPublisher(url, queue, payloads)
        if not live:
            publish_s = publisher.run()
        else:
            ConfirmedPublisher(url, queue, []).run()  # declares the queue
        bridge = BridgeProcess(url=url, queue=queue, topic=topic, prefetch=prefetch, linger_ms=linger_ms, processes=processes,
                               log_path=log_dir / f"bridge-{'live' if live else 'drain'}-{prefetch}-{linger_ms:g}-x{processes}.log")
        n = len(payloads)
        if live:
            wait_for(lambda: queue_state(url, queue)[1] == processes, 60, "bridge consuming", interval=0.1)
            thread = threading.Thread(target=publisher.run, daemon=True)
            started, cpu0 = time.perf_counter(), bridge.cpu_seconds()
            thread.start()
            wait_for(lambda: marks.total() >= n, 600, "all records in Kafka")
            elapsed = time.perf_counter() - started
            thread.join(60)
            publish_s = publisher.elapsed
        else:
            wait_for(lambda: marks.total() > 0, 60, "first record in Kafka", interval=0.005)
            started, cpu0 = time.perf_counter(), bridge.cpu_seconds()
            # With N processes, the others may still be connecting: their start-up is in the time.
            wait_for(lambda: marks.total() >= n, 600, "all records in Kafka")
            elapsed = time.perf_counter() - started
        wait_for(lambda: queue_state(url, queue)[0] == 0, 60, "queue empty", interval=0.1)
        cpu = bridge.cpu_seconds() - cpu0
        rss = bridge.peak_rss_mb()
        code = bridge.stop()
        assert code == 0, f"bridge exited {code} (log: {bridge.log_path})"
        left, consumers = queue_state(url, queue)
        assert (left, consumers) == (0, 0), f"{left} messages left in the queue after the bridge stopped"
        return {"seconds": elapsed, "rate": n / elapsed, "rss": rss, "publish_rate": n / publish_s, "records": marks.total(),
                "cpu_us": cpu / n * 1e6}
    finally:
        if bridge is not None:
            bridge.stop()
        marks.close()
        delete_topic(topic)
        try:
            delete_queue(url, queue)
        except pika.exceptions.AMQPError:
            pass


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--prefetch", default="500", help="comma-separated prefetch values for the bridge")
    parser.add_argument("--linger-ms", default="5", help="comma-separated linger.ms values (bridge and direct)")
    parser.add_argument("--processes", default="1", help="comma-separated bridge_amqp --processes values")
    parser.add_argument("--url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"))
    parser.add_argument("--repeat", type=int, default=3, help="runs of each configuration (medians are shown)")
    parser.add_argument("--no-live", action="store_true", help="skip the end-to-end run with a concurrent publisher")
    parser.add_argument("--log-dir", default="/tmp", help="where the bridge logs go")
    args = parser.parse_args()
    run = uuid.uuid4().hex[:6]
    payloads = bodies(args.messages, run)
    prefetches = [int(p) for p in args.prefetch.split(",")]
    process_counts = [int(p) for p in args.processes.split(",")]
    lingers = [float(v) for v in args.linger_ms.split(",")]
    log_dir = Path(args.log_dir)
    # The machine may be shared: each configuration runs `repeat` times, interleaved with its
    # direct baseline, and the table shows medians (ratios are taken within one repetition).
    results: dict[str, list[dict]] = {}
    order: list[str] = []

    def record(name: str, **values) -> None:
        if name not in results:
            order.append(name)
        results.setdefault(name, []).append(values)

    for repetition in range(args.repeat):
        for linger in lingers:
            log(f"[{repetition + 1}/{args.repeat}] kafka direct, linger.ms={linger:g}")
            seconds, cpu = kafka_direct(payloads, linger_ms=linger)
            direct = args.messages / seconds
            record(f"kafka direct (produce_demand, acks=all), linger {linger:g} ms", rate=direct, ratio=1.0,
                   cpu_us=cpu / args.messages * 1e6, rss=None, publish_rate=None)
            for prefetch, processes, live in [(p, n, live) for p in prefetches for n in process_counts
                                              for live in ([False] if args.no_live else [False, True])]:
                    kind = "live" if live else "drain"
                    what = f"bridge ×{processes} {kind}, prefetch {prefetch}, linger {linger:g} ms"
                    log(f"[{repetition + 1}/{args.repeat}] {what}")
                    result = bridge_run(args.url, payloads, prefetch=prefetch, linger_ms=linger, live=live, log_dir=log_dir,
                                        processes=processes)
                    record(what, rate=result["rate"],
                           ratio=result["rate"] / direct, cpu_us=result["cpu_us"], rss=result["rss"],
                           publish_rate=result["publish_rate"])
    load = open("/proc/loadavg").read().split()[:3]
    print()
    print(f"{args.messages:,} messages of ~{len(payloads[0])} bytes; publisher: persistent, confirms (window 2000); "
          f"load average {' '.join(load)} on {os.cpu_count()} cores")
    print(f"medians of {args.repeat} run(s); × direct: the bridge's rate over the direct rate of the same repetition (range)")
    print(f"| {'path':<52} | {'msgs/s':>8} | {'× direct':<16} | {'CPU µs/msg':>10} | {'bridge peak RSS':>15} | {'publisher msgs/s':>16} |")
    print(f"|{'-' * 54}|{'-' * 10}|{'-' * 18}|{'-' * 12}|{'-' * 17}|{'-' * 18}|")
    for name in order:
        runs = results[name]

        def med(key):
            values = [run[key] for run in runs if run[key] is not None]
            return statistics.median(values) if values else None

        rate, ratio, cpu_us, rss, publish_rate = (med(key) for key in ("rate", "ratio", "cpu_us", "rss", "publish_rate"))
        spread = f" ({min(r['ratio'] for r in runs):.2f}–{max(r['ratio'] for r in runs):.2f})" if len(runs) > 1 and ratio != 1.0 else ""
        rss_text = f"{rss:.0f} MB" if rss is not None else ""
        pub_text = f"{publish_rate:,.0f}" if publish_rate is not None else ""
        print(f"| {name:<52} | {rate:>8,.0f} | {ratio:>4.2f}{spread:<12} | {cpu_us:>10.1f} | {rss_text:>15} | {pub_text:>16} |")

if __name__ == "__main__":
    main()
