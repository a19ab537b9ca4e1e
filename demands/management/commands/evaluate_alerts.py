import signal
import threading

from django.core.management.base import BaseCommand, CommandError

from demands.monitoring.monitor import Monitor


class Command(BaseCommand):
    help = (
        "Run the monitor: every --interval seconds roll up flow history, snapshot the backlog, sample "
        "consumer lag, evaluate alert rules and send notifications (webhook/e-mail retried with back-off). "
        "--once runs a single tick and exits 1 if a step failed. SIGTERM/SIGINT finish the tick and exit."
    )

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="one tick, then exit")
        parser.add_argument("--interval", type=float, default=None, help="seconds between ticks (MONITORING_TICK_SECONDS)")
        parser.add_argument("--no-lag", action="store_true", help="do not sample consumer lag from the broker")
        parser.add_argument("--no-broadcast", action="store_true", help="do not push updates to browsers")

    def handle(self, *args, **options):
        if options["interval"] is not None and options["interval"] <= 0:
            raise CommandError("--interval must be > 0")
        monitor = Monitor(sample_lag=not options["no_lag"], broadcast=not options["no_broadcast"], interval=options["interval"])
        if options["once"]:
            result = monitor.tick()
            for name, value in result.steps.items():
                self.stdout.write(f"{name}: {value}")
            if result.errors:
                raise CommandError("; ".join(f"{name}: {error}" for name, error in result.errors.items()))
            return
        stop = threading.Event()

        def request_stop(signum, _frame):
            self.stderr.write(f"{signal.Signals(signum).name}: stopping after this tick")
            stop.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        monitor.run(stop)
