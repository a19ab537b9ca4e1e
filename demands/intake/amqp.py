"""The AMQP 0-9-1 source of the bridge (RabbitMQ), with pika's BlockingConnection.

`python manage.py bridge_amqp` runs `Bridge(AmqpSource(...))`: see bridge.py for the
confirm-then-ack promise; this module only speaks AMQP.

How it behaves in production:

- One connection, one channel, one consumer per queue in `AMQP_QUEUES`. A queue that does not
  exist is declared durable (an existing one is used as it is: a passive declare comes first, so
  a queue made with other arguments — quorum, dead-lettering — is never re-declared).
- `basic_qos(prefetch_count=AMQP_PREFETCH)` per consumer: RabbitMQ sends at most that many
  unacknowledged messages per queue, which bounds what is in flight to Kafka, and what a crash
  of the bridge has RabbitMQ re-deliver (flagged `redelivered`).
- Acks go out as `basic_ack(tag, multiple=True)` for runs of Kafka-confirmed tags, and a record
  Kafka did not take is `basic_nack(tag, requeue=True)`. Never auto-ack.
- Single-threaded (pika is not thread-safe): the bridge calls `poll()`, which runs
  `process_data_events` — deliveries, heartbeats (`heartbeat` seconds, negotiated with the
  broker), acks — between its turns with the Kafka producer.
- A lost connection (broker restart, network, heartbeat timeout, the consumer cancelled because
  its queue was deleted) surfaces as SourceUnavailable; the bridge reconnects with back-off. A
  new connection starts a new delivery-tag sequence (`stream`), so old tags are never acked on it.
- Credentials come from the URL (`AMQP_URL`) and are never logged.
"""

from __future__ import annotations

import logging
import os
from urllib.parse import urlsplit, urlunsplit

import pika
import pika.exceptions
from django.conf import settings

from .bridge import SourceMessage, SourceUnavailable, header_value

logger = logging.getLogger(__name__)

# pika logs several INFO/ERROR lines per connection attempt: a flood while a broker is down. The
# bridge logs each state change itself; LOGGING["loggers"]["pika"] brings pika's lines back.
if logging.getLogger("pika").level == logging.NOTSET:
    logging.getLogger("pika").setLevel(logging.CRITICAL)

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


def setting(name: str, default):
    """settings.NAME, else the environment variable NAME, else the default (typed like it)."""
    value = getattr(settings, name, None)
    if value is None:
        value = os.environ.get(name)
    if value is None:
        return default
    if isinstance(default, bool):
        return str(value).lower() in ("1", "true", "yes", "on") if not isinstance(value, bool) else value
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float):
        return float(value)
    if isinstance(default, list):
        return [item.strip() for item in value.split(",") if item.strip()] if isinstance(value, str) else list(value)
    return value


def amqp_url() -> str:
    return setting("AMQP_URL", DEFAULT_URL)


def amqp_queues() -> list[str]:
    return setting("AMQP_QUEUES", ["demands"])


def amqp_prefetch() -> int:
    return setting("AMQP_PREFETCH", 500)


def amqp_max_failures() -> int:
    return setting("AMQP_MAX_FAILURES", 10)


def redacted(url: str) -> str:
    """The URL without its password, for log lines."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def message_headers(queue: str, method, properties) -> list[tuple[str, bytes]]:
    """Kafka headers saying where the message came from: amqp.queue, amqp.delivery_tag,
    amqp.message_id (when set), amqp.exchange, amqp.routing_key, amqp.redelivered (when so), and
    each AMQP header as amqp.header.<name>."""
    headers = [
        ("amqp.queue", queue.encode()),
        ("amqp.delivery_tag", str(method.delivery_tag).encode()),
        ("amqp.exchange", (method.exchange or "").encode()),
        ("amqp.routing_key", (method.routing_key or "").encode()),
    ]
    if properties.message_id is not None:
        headers.append(("amqp.message_id", header_value(properties.message_id)))
    if method.redelivered:
        headers.append(("amqp.redelivered", b"true"))
    for name, value in (properties.headers or {}).items():
        if value is not None:
            headers.append((f"amqp.header.{name}", header_value(value)))
    return headers


class AmqpSource:
    kind = "amqp"

    def __init__(
        self,
        *,
        url: str | None = None,
        queues: list[str] | None = None,
        prefetch: int | None = None,
        heartbeat: int = 30,
        connect_timeout: float = 5.0,
        connection_factory=pika.BlockingConnection,
    ):
        self.url = url or amqp_url()
        self.queues = list(queues or amqp_queues())
        if not self.queues:
            raise ValueError("no AMQP queue to read")
        self.prefetch = prefetch or amqp_prefetch()
        self.heartbeat = heartbeat
        self.connect_timeout = connect_timeout
        self.connection_factory = connection_factory
        self.stream: tuple[int, int] | None = None  # (connection number, channel number)
        self._generation = 0
        self._connection = None
        self._channel = None
        self._received: list[SourceMessage] = []
        self._cancelled: str | None = None
        self._consumer_tags: list[str] = []

    def describe(self) -> str:
        return f"amqp {redacted(self.url)} queues {','.join(self.queues)} prefetch {self.prefetch}"

    # -- connection ------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._channel is not None and self._channel.is_open and self._connection.is_open

    def connect(self) -> None:
        self.close()
        try:
            parameters = pika.URLParameters(self.url)
            parameters.heartbeat = self.heartbeat
            parameters.socket_timeout = self.connect_timeout
            parameters.stack_timeout = self.connect_timeout * 3
            parameters.blocked_connection_timeout = 300  # broker in flow control for 5 min: reconnect
            parameters.connection_attempts = 1
            parameters.client_properties = {"connection_name": f"umsg bridge_amqp pid {os.getpid()}"}
            self._connection = self.connection_factory(parameters)
            channel = self._connection.channel()
            for queue in self.queues:
                channel = self._ensure_queue(channel, queue)
            channel.basic_qos(prefetch_count=self.prefetch)
            channel.add_on_cancel_callback(self._on_cancel)
            self._generation += 1
            self.stream = (self._generation, channel.channel_number)  # before the first delivery
            self._cancelled = None
            self._received = []
            self._consumer_tags = [
                channel.basic_consume(queue, on_message_callback=self._on_message(queue), auto_ack=False)
                for queue in self.queues
            ]
        except (pika.exceptions.AMQPError, OSError) as exc:
            self.close()
            raise SourceUnavailable(describe_error(exc)) from exc
        self._channel = channel

    def _ensure_queue(self, channel, queue: str):
        """Passive declare; if the queue is missing (404 closes the channel) declare it durable on
        a new channel. Returns the channel to go on with."""
        try:
            channel.queue_declare(queue, passive=True)
            return channel
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != 404:
                raise
        channel = self._connection.channel()
        channel.queue_declare(queue, durable=True)
        logger.info("amqp: declared durable queue %s", queue)
        return channel

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        self._received = []
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except Exception:  # already broken: nothing to close cleanly
                pass

    # -- consuming -------------------------------------------------------------------------------
    def _on_message(self, queue: str):
        def on_message(_channel, method, properties, body):
            self._received.append(
                SourceMessage(self.stream, method.delivery_tag, queue, body, message_headers(queue, method, properties))
            )

        return on_message

    def _on_cancel(self, frame) -> None:
        self._cancelled = f"consumer cancelled by the broker ({getattr(frame.method, 'consumer_tag', '?')}; queue deleted?)"

    def poll(self, timeout: float) -> list[SourceMessage]:
        if not self.connected:
            raise SourceUnavailable("not connected")
        try:
            self._connection.process_data_events(time_limit=timeout)
        except (pika.exceptions.AMQPError, OSError) as exc:
            raise SourceUnavailable(describe_error(exc)) from exc
        if self._cancelled:
            raise SourceUnavailable(self._cancelled)
        received, self._received = self._received, []
        return received

    def _channel_for(self, stream):
        if stream != self.stream or not self.connected:
            raise SourceUnavailable(f"channel {stream} is gone")
        return self._channel

    def ack(self, stream, tag: int, *, multiple: bool) -> None:
        try:
            self._channel_for(stream).basic_ack(delivery_tag=tag, multiple=multiple)
        except (pika.exceptions.AMQPError, OSError) as exc:
            raise SourceUnavailable(describe_error(exc)) from exc

    def nack(self, stream, tag: int) -> None:
        try:
            self._channel_for(stream).basic_nack(delivery_tag=tag, multiple=False, requeue=True)
        except (pika.exceptions.AMQPError, OSError) as exc:
            raise SourceUnavailable(describe_error(exc)) from exc

    def stop_consuming(self) -> None:
        """Cancel the consumers: RabbitMQ delivers no more to us (what we hold stays unacked)."""
        if not self.connected:
            return
        try:
            for tag in self._consumer_tags:
                self._channel.basic_cancel(tag)
        except (pika.exceptions.AMQPError, OSError) as exc:
            raise SourceUnavailable(describe_error(exc)) from exc
        self._received = []  # delivered before the cancel: not produced, re-delivered after close

    def depth(self) -> dict[str, dict[str, int]]:
        """Ready messages and consumers per queue (a passive declare each; no management plugin)."""
        if not self.connected:
            raise SourceUnavailable("not connected")
        depth = {}
        try:
            for queue in self.queues:
                ok = self._channel.queue_declare(queue, passive=True).method
                depth[queue] = {"messages": ok.message_count, "consumers": ok.consumer_count}
        except (pika.exceptions.AMQPError, OSError) as exc:
            raise SourceUnavailable(describe_error(exc)) from exc
        return depth


def describe_error(exc: BaseException) -> str:
    text = str(exc) or repr(exc)
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text
