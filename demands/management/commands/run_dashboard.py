"""The embedded default: daphne, the consume loop and (optionally) a demo producer in one process.

One process means the in-memory channel layer reaches every browser, so `make run` needs no Redis.
daphne implements no ASGI lifespan, so the consume loop is started here, in a thread, before
daphne's server takes the main thread (and its signal handlers). Production runs daphne and
`consume_demands` as separate processes with REDIS_URL set instead.
"""

import logging
import random
import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from demands.demo import demo_demand
from demands.kafka import ensure_topics, make_producer, produce_demand
from demands.pipeline.loop import ConsumeLoop

logger = logging.getLogger("demands.dashboard")


class Command(BaseCommand):
    help = "Serve the dashboard with daphne, consuming Kafka in the same process (and producing demo demands)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-consumer", action="store_true", help="serve only; run consume_demands separately")
        parser.add_argument("--no-demo", action="store_true", help="do not produce demo demands")
        parser.add_argument("--demo-rate", type=float, default=0.5, help="demo demands per second")
        parser.add_argument("--no-monitor", action="store_true", help="do not evaluate alerts here; run evaluate_alerts separately")

    def handle(self, *args, **options):
        # Import here: daphne installs Twisted's asyncio reactor on import.
        from channels.routing import get_default_application
        from daphne.endpoints import build_endpoint_description_strings
        from daphne.server import Server

        import daphne.server

        from demands import live

        # Broadcasts from the consumer and monitor threads go straight onto daphne's loop.
        live.use_server_loop(daphne.server.twisted_loop)
        stop = threading.Event()
        threads = []
        loop_holder: dict = {}
        if not options["no_consumer"]:
            threads.append(threading.Thread(target=self._consume, args=(stop, loop_holder), name="consumer", daemon=True))
        if not options["no_demo"] and options["demo_rate"] > 0:
            threads.append(threading.Thread(target=self._demo, args=(stop, options["demo_rate"]), name="demo-producer", daemon=True))
        if not options["no_monitor"]:  # monitoring: lag samples, roll-ups and alert rules (demands/monitoring/monitor.py)
            from demands.monitoring.monitor import Monitor

            threads.append(threading.Thread(target=Monitor().run, args=(stop,), name="monitor", daemon=True))
        for thread in threads:
            thread.start()

        self.stdout.write(
            self.style.SUCCESS(f"Dashboard on http://{options['host']}:{options['port']}/  (Ctrl-C stops everything)")
        )
        server = Server(
            application=get_default_application(),
            endpoints=build_endpoint_description_strings(host=options["host"], port=options["port"]),
            signal_handlers=True,
            verbosity=0,
        )
        # A shell starts background jobs with SIGINT ignored, and Twisted then leaves it ignored:
        # restore the default so Ctrl-C / kill -INT stop the server wherever it was started.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            server.run()
            if not server.listening_addresses:
                # daphne logs "Listen failure" and returns; a supervisor must see a failure.
                raise CommandError(f"could not listen on {options['host']}:{options['port']} (in use, or not allowed)")
        finally:
            stop.set()
            if "loop" in loop_holder:
                loop_holder["loop"].stop()
            for thread in threads:
                thread.join(timeout=15)

    def _consume(self, stop: threading.Event, holder: dict) -> None:
        """Run the consume loop; if it gives up (database/broker gone), start it again: this thread
        is its own supervisor, as systemd would be for a separate consume_demands process."""
        while not stop.is_set():
            loop = ConsumeLoop()
            holder["loop"] = loop
            try:
                loop.run()
            except Exception:
                logger.exception("consume loop failed; restarting in 5 s")
                stop.wait(5)

    def _demo(self, stop: threading.Event, rate: float) -> None:
        rng = random.Random()
        producer = None
        while not stop.is_set():
            try:
                if producer is None:
                    ensure_topics(settings.KAFKA_TOPICS)
                    producer = make_producer()
                produce_demand(producer, demo_demand(rng))
                producer.poll(0)
            except Exception:
                logger.exception("demo producer failed; retrying in 5 s")
                producer = None
                stop.wait(5)
                continue
            # Irregular arrivals look like real traffic: exponential gaps around the mean rate.
            stop.wait(min(rng.expovariate(rate), 10 / rate))
        if producer is not None:
            producer.flush(5)
