import json
import random
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from demands.demo import demo_demand
from demands.kafka import demand_key, ensure_topics, make_producer, produce_demand


class Progress:
    """One status line on stderr, redrawn at most twice a second (a plain line per update off a TTY)."""

    def __init__(self, stream, total: int | None):
        self.stream, self.total = stream, total
        self.sent = self.delivered = self.failed = 0
        self.started = self.last = time.monotonic()

    def on_delivery(self, error, _message):
        if error is None:
            self.delivered += 1
        else:
            self.failed += 1
            self.stream.write(f"\ndelivery failed: {error}\n")

    def show(self, force: bool = False):
        now = time.monotonic()
        if not force and now - self.last < 0.5:
            return
        self.last = now
        rate = self.sent / max(now - self.started, 1e-9)
        total = f"/{self.total}" if self.total else ""
        line = f"sent {self.sent}{total}  delivered {self.delivered}  failed {self.failed}  {rate:.0f} msg/s"
        self.stream.write(("\r" + line) if self.stream.isatty() else line + "\n")
        self.stream.flush()


class Command(BaseCommand):
    help = (
        "Send demands to Kafka: JSON lines from a file or stdin (each line sent as is), or generated "
        "realistic demo demands with --demo at --rate per second."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", nargs="?", help="JSON-lines file; '-' or omitted reads stdin (unless --demo)")
        parser.add_argument("--topic", default=settings.KAFKA_TOPICS[0])
        parser.add_argument("--demo", action="store_true", help="generate demo demands")
        parser.add_argument("--rate", type=float, default=5.0, help="demo demands per second (0 = as fast as possible)")
        parser.add_argument("--count", type=int, default=100, help="demo demands in all (0 = until interrupted)")
        parser.add_argument("--seed", type=int, default=None, help="random seed for reproducible demo data")

    def handle(self, *args, **options):
        ensure_topics([options["topic"]])
        producer = make_producer()
        if options["demo"]:
            if options["rate"] < 0 or options["count"] < 0:
                raise CommandError("--rate and --count must be ≥ 0")
            progress = Progress(self.stderr._out, options["count"] or None)
            self._demo(producer, progress, options)
        else:
            progress = Progress(self.stderr._out, None)
            self._lines(producer, progress, options)
        remaining = producer.flush(30)
        progress.show(force=True)
        self.stderr.write("")
        if remaining or progress.failed:
            raise CommandError(f"{progress.failed} failed and {remaining} undelivered messages")

    def _demo(self, producer, progress, options):
        rng = random.Random(options["seed"])
        interval = 1.0 / options["rate"] if options["rate"] else 0.0
        next_at = time.monotonic()
        try:
            while not options["count"] or progress.sent < options["count"]:
                produce_demand(producer, demo_demand(rng), topic=options["topic"], on_delivery=progress.on_delivery)
                progress.sent += 1
                producer.poll(0)
                progress.show()
                if interval:
                    next_at += interval
                    delay = next_at - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
        except KeyboardInterrupt:
            self.stderr.write("\ninterrupted: flushing what was sent")

    def _lines(self, producer, progress, options):
        path = options["file"]
        try:
            stream = sys.stdin.buffer if path in (None, "-") else open(path, "rb")
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc}") from exc
        with stream:
            for raw in stream:
                raw = raw.strip()
                if not raw:
                    continue
                try:
                    key = demand_key(json.loads(raw))
                except ValueError:
                    key = None  # sent anyway: the consumer rejects it with a reason and dead-letters it
                while True:
                    try:
                        producer.produce(options["topic"], value=raw, key=key, on_delivery=progress.on_delivery)
                        break
                    except BufferError:
                        producer.poll(0.1)
                progress.sent += 1
                producer.poll(0)
                progress.show()
