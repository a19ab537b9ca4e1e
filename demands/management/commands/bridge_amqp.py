import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from demands.intake.amqp import AmqpSource, amqp_max_failures, amqp_prefetch, amqp_queues, amqp_url, setting
from demands.intake.bridge import Bridge, BridgeFailed
from demands.intake.workers import run_forked
from demands.monitoring.amqp import BridgeHeartbeatWriter


class Command(BaseCommand):
    help = (
        "Forward RabbitMQ queues (AMQP_URL, AMQP_QUEUES) into the demand topic; a message is acked "
        "only after Kafka confirmed its record. SIGTERM/SIGINT: stop consuming, finish what is in "
        "flight, ack it, exit 0. Repeated broker failures exit 1 so a supervisor restarts the process."
    )

    def add_arguments(self, parser):
        parser.add_argument("--topic", default=None, help="Kafka topic (default: the first of KAFKA_TOPICS)")
        parser.add_argument("--queues", default=None, help="comma-separated queues (default: AMQP_QUEUES, else 'demands')")
        parser.add_argument("--url", default=None, help="AMQP URL (default: AMQP_URL)")
        parser.add_argument("--prefetch", type=int, default=None, help="unacked messages per queue (default: AMQP_PREFETCH, 500)")
        parser.add_argument("--max-failures", type=int, default=None, help="consecutive failures before exiting 1 (AMQP_MAX_FAILURES, 10)")
        parser.add_argument("--linger-ms", type=float, default=None, help="Kafka producer linger.ms (default 5)")
        parser.add_argument("--drain-timeout", type=float, default=30.0, help="seconds a stop waits for Kafka to confirm what is in flight")
        parser.add_argument("--stats-interval", type=float, default=30.0, help="seconds between throughput lines")
        parser.add_argument("--stats-file", default=None, help="write the counters as JSON here every 5 s (heartbeat)")
        parser.add_argument("--processes", type=int, default=None,
                            help="bridge processes on the same queues (AMQP_PROCESSES, 1); each has its own channel and prefetch")

    def handle(self, *args, **options):
        queues = amqp_queues() if options["queues"] is None else [q.strip() for q in options["queues"].split(",") if q.strip()]
        if not queues:
            raise CommandError("--queues needs at least one queue")
        prefetch = options["prefetch"] or amqp_prefetch()
        if prefetch < 1:
            raise CommandError("--prefetch must be ≥ 1")
        processes = options["processes"] or setting("AMQP_PROCESSES", 1)
        if processes < 1:
            raise CommandError("--processes must be ≥ 1")
        if processes > 1:
            stats_file = options["stats_file"]
            code = run_forked(processes, lambda n: self._bridge(options, queues, prefetch,
                                                                 f"{stats_file}.{n}" if stats_file else None))
            if code:
                raise CommandError("a bridge worker failed (see above); all stopped")
            return
        self._bridge(options, queues, prefetch, options["stats_file"])

    def _bridge(self, options, queues, prefetch, stats_file):
        source = AmqpSource(url=options["url"] or amqp_url(), queues=queues, prefetch=prefetch)
        producer_config = {} if options["linger_ms"] is None else {"linger.ms": options["linger_ms"]}
        bridge = Bridge(
            source,
            topic=options["topic"] or settings.KAFKA_TOPICS[0],
            max_failures=options["max_failures"] or amqp_max_failures(),
            stats_interval=options["stats_interval"],
            drain_timeout=options["drain_timeout"],
            producer_config=producer_config,
            stats_file=stats_file,
            heartbeat=BridgeHeartbeatWriter(),  # the monitoring page's and the bridge_dead rule's view of it
        )

        def request_stop(signum, _frame):
            self.stderr.write(f"{signal.Signals(signum).name}: finishing the messages in flight, then exiting")
            bridge.stop()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        try:
            bridge.run()
        except BridgeFailed as exc:
            raise CommandError(str(exc)) from exc
