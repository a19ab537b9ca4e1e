"""The embedded default: daphne, the consume loop and (optionally) a demo producer in one process.

One process means the in-memory channel layer reaches every browser, so `make run` needs no Redis.
daphne implements no ASGI lifespan, so the consume loop is started here, in a thread, before
daphne's server takes the main thread (and its signal handlers). Production runs daphne and
`consume_demands` as separate processes with REDIS_URL set instead.

With `--amqp` (or AMQP_URL set in the environment) the RabbitMQ bridge runs here too, in a thread
that restarts it like the consumer's, and the demo producer sends a share of its demands
(`--demo-amqp-share`, a third by default) to the first queue of AMQP_QUEUES instead of Kafka, so
the demand pages show "RabbitMQ queue …, then Kafka". Production runs `bridge_amqp` on its own.
"""

import json
import logging
import os
import random
import signal
import threading
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

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
        parser.add_argument("--amqp", action="store_true", help="run the RabbitMQ bridge here too (default when AMQP_URL is set)")
        parser.add_argument("--no-amqp", action="store_true", help="no bridge here even when AMQP_URL is set")
        parser.add_argument("--demo-amqp-share", type=float, default=1 / 3, help="share of demo demands sent through RabbitMQ with the bridge")

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
        amqp = embed_amqp(options, os.environ)
        if amqp:  # the monitor samples RabbitMQ, the bridge thread forwards it
            settings.AMQP_CONFIGURED = True
            threads.append(threading.Thread(target=self._bridge, args=(stop, loop_holder), name="bridge-amqp", daemon=True))
        if not options["no_demo"] and options["demo_rate"] > 0:
            share = options["demo_amqp_share"] if amqp else 0.0
            threads.append(threading.Thread(target=self._demo, args=(stop, options["demo_rate"], share), name="demo-producer", daemon=True))
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
            for running in ("loop", "bridge"):
                if running in loop_holder:
                    loop_holder[running].stop()
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

    def _bridge(self, stop: threading.Event, holder: dict) -> None:
        """Run the RabbitMQ bridge; when it gives up (broker gone for long), start it again."""
        from demands.intake.amqp import AmqpSource
        from demands.intake.bridge import Bridge
        from demands.monitoring.amqp import BridgeHeartbeatWriter

        while not stop.is_set():
            bridge = Bridge(AmqpSource(), topic=settings.KAFKA_TOPICS[0], heartbeat=BridgeHeartbeatWriter())
            holder["bridge"] = bridge
            if stop.is_set():
                return
            try:
                bridge.run()
            except Exception:
                logger.exception("RabbitMQ bridge failed; restarting in 5 s")
                stop.wait(5)
            finally:
                connections.close_all()

    def _demo(self, stop: threading.Event, rate: float, amqp_share: float = 0.0) -> None:
        rng = random.Random()
        producer = None
        rabbit = DemoAmqpPublisher() if amqp_share > 0 else None
        while not stop.is_set():
            try:
                if producer is None:
                    ensure_topics(settings.KAFKA_TOPICS)
                    producer = make_producer()
                demand = demo_demand(rng)
                if rabbit is None or rng.random() >= amqp_share or not rabbit.publish(demand):
                    produce_demand(producer, demand)  # RabbitMQ down: the demand goes to Kafka directly
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
        if rabbit is not None:
            rabbit.close()


def embed_amqp(options: dict, environ) -> bool:
    """Run the bridge here: --amqp, or AMQP_URL in the environment (unless --no-amqp)."""
    return not options.get("no_amqp") and (options.get("amqp") or bool(environ.get("AMQP_URL")))


class DemoAmqpPublisher:
    """Publishes demo demands to the first AMQP queue (persistent, publisher confirms); False when
    RabbitMQ cannot take one (then the caller sends it to Kafka), reconnecting at most every 10 s."""

    def __init__(self):
        from demands.intake.amqp import amqp_queues, amqp_url

        self.url, self.queue = amqp_url(), amqp_queues()[0]
        self._channel = self._connection = None
        self._retry_at = 0.0

    def publish(self, demand: dict) -> bool:
        import pika

        try:
            if self._channel is None:
                if time.monotonic() < self._retry_at:
                    return False
                self._retry_at = time.monotonic() + 10
                self._connection = pika.BlockingConnection(pika.URLParameters(self.url))
                self._channel = self._connection.channel()
                self._channel.queue_declare(self.queue, durable=True)
                self._channel.confirm_delivery()
            self._channel.basic_publish("", self.queue, json.dumps(demand, ensure_ascii=False).encode(),
                                        pika.BasicProperties(delivery_mode=2, content_type="application/json"))
            return True
        except Exception as exc:
            logger.warning("demo: RabbitMQ did not take a demand (%s); sending to Kafka directly", exc)
            self.close()
            return False

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        try:
            if connection is not None and connection.is_open:
                connection.close()
        except Exception:
            pass
