import gc
import signal
import sys

from confluent_kafka import KafkaException
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from demands.pipeline.loop import ConsumeLoop, ConsumerFailed


class Command(BaseCommand):
    help = (
        "Consume demands from Kafka into the database in batches; offsets are committed only after "
        "the batch's transaction. SIGTERM/SIGINT finish the batch, commit and exit 0; repeated "
        "database/broker failures exit 1 so a supervisor restarts the process."
    )

    def add_arguments(self, parser):
        parser.add_argument("--topics", default=",".join(settings.KAFKA_TOPICS), help="comma-separated topics")
        parser.add_argument("--group", default=settings.KAFKA_CONSUMER_GROUP, help="consumer group id")
        parser.add_argument("--batch-size", type=int, default=settings.CONSUMER_BATCH_SIZE, help="max records per batch")
        parser.add_argument("--batch-time", type=float, default=settings.CONSUMER_BATCH_TIMEOUT, help="seconds a batch may wait for more records after its first (0: take what has arrived)")
        parser.add_argument("--max-failures", type=int, default=settings.CONSUMER_MAX_FAILURES, help="consecutive failures before exiting 1")
        parser.add_argument("--no-broadcast", action="store_true", help="do not push new demands to browsers")
        parser.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics on this port (monitoring)")
        parser.add_argument("--metrics-addr", default=settings.CONSUMER_METRICS_ADDR, help="address the metrics server listens on (loopback unless CONSUMER_METRICS_ADDR says otherwise)")

    def handle(self, *args, **options):
        topics = [topic.strip() for topic in options["topics"].split(",") if topic.strip()]
        if not topics:
            raise CommandError("--topics needs at least one topic")
        if options["batch_size"] < 1 or options["batch_time"] < 0:
            raise CommandError("--batch-size must be ≥ 1 and --batch-time ≥ 0")
        if options["metrics_port"] is not None:  # monitoring: Prometheus exporter for this process's loop
            from demands.monitoring.prometheus import start_consumer_metrics_server

            start_consumer_metrics_server(options["metrics_port"], addr=options["metrics_addr"])
        loop = ConsumeLoop(
            topics=topics,
            group=options["group"],
            batch_size=options["batch_size"],
            batch_timeout=options["batch_time"],
            max_failures=options["max_failures"],
            broadcast=not options["no_broadcast"],
        )

        def request_stop(signum, _frame):
            self.stderr.write(f"{signal.Signals(signum).name}: finishing the current batch, then exiting")
            loop.stop()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        tune_garbage_collector()
        tune_switch_interval()
        try:
            loop.run()
        except ConsumerFailed as exc:
            raise CommandError(str(exc)) from exc
        except KafkaException as exc:  # at start: broker unreachable for a minute, or credentials refused
            raise CommandError(f"Kafka: {exc.args[0].str() if exc.args and hasattr(exc.args[0], 'str') else exc}") from exc


def tune_garbage_collector() -> None:
    """A batch's few thousand objects live until it is stored, so with the default thresholds the
    collector walked and promoted them every 700 allocations, and its full collections walked every
    object Django had loaded: a fifth of the time spent preparing a batch (bench/README.md). What
    start-up loaded is frozen (never walked again) and the young generation is collected every
    50,000 allocations. Ingest frees its objects by reference counting; cycles are still collected,
    only less often. Only this process's loop is tuned: the dashboard keeps Python's defaults."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 10)



def tune_switch_interval() -> None:
    """The loop's read-ahead thread holds the GIL while it parses; each database reply the loop
    receives meanwhile waits for the GIL up to the switch interval (5 ms by default), which ate
    most of the overlap. 0.5 ms lets the loop get on with the batch after each round trip. It is
    interpreter-wide, so only this process sets it: the dashboard runs the loop in a thread of the
    web process and keeps Python's default."""
    sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))
