"""What a bridge relays, apart from the relaying: the message a source hands over (`SourceMessage`,
the `Source` protocol a second source kind implements beside `amqp.py`), the confirm-then-ack
bookkeeping (`AckTracker`: a message is acked only once Kafka confirmed it and every earlier one
on its channel), the Kafka record's key and headers, the per-queue counters monitoring reads
(`bridge_stats`), and the bridge's periodic reporting (`BridgeReporting`).
"""

from __future__ import annotations

import json
import logging
import os
import time
import weakref
from collections import deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import orjson
from demands.kafka import demand_key

logger = logging.getLogger(__name__)

BACKOFF_START, BACKOFF_CAP = 0.5, 30.0

# Bridges running in this process, for bridge_stats() (monitoring).
running_bridges: "weakref.WeakSet" = weakref.WeakSet()


def bridge_stats() -> list[dict]:
    """A snapshot of the counters of every bridge running in this process."""
    return [bridge.stats.snapshot() for bridge in list(running_bridges)]


def backoff(failures: int) -> float:
    """Seconds to wait after the n-th consecutive failure: 0.5, 1, 2, 4 … capped at 30."""
    return min(BACKOFF_START * 2 ** max(failures - 1, 0), BACKOFF_CAP)


# -- what a source hands over --------------------------------------------------------------------
@dataclass(slots=True)
class SourceMessage:
    """One message read from a source, not yet acknowledged there.

    `stream` names the sequence its `tag` belongs to (for AMQP: one channel of one connection);
    tags increase within a stream, and acknowledging tag T with `multiple` covers every earlier
    tag of that stream. A reconnect starts a new stream.
    """

    stream: Hashable
    tag: int
    queue: str
    body: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)


class SourceUnavailable(Exception):
    """The source broker cannot be reached, or the connection broke: reconnect with back-off."""


class Source(Protocol):
    """What the bridge needs from a source client. Every method runs on the bridge's thread."""

    kind: str  # "amqp": names the source in log lines and stats
    queues: list[str]

    def connect(self) -> None:
        """Connect and start consuming; raise SourceUnavailable if the broker cannot be reached."""

    @property
    def connected(self) -> bool: ...

    def poll(self, timeout: float) -> list[SourceMessage]:
        """Do the connection's I/O for up to `timeout` seconds (less if messages arrive) and return
        the messages received, in tag order. Raises SourceUnavailable when the connection is lost."""

    def ack(self, stream: Hashable, tag: int, *, multiple: bool) -> None:
        """Acknowledge `tag` (and with `multiple`, every earlier unacknowledged tag) of `stream`."""

    def nack(self, stream: Hashable, tag: int) -> None:
        """Return one message to its queue (requeue) for a later delivery."""

    def stop_consuming(self) -> None:
        """Ask the broker for no more deliveries (those received stay unacked until close)."""

    def depth(self) -> dict[str, dict[str, int]]:
        """Per queue: {"messages": ready, "consumers": n} — for the stats line and monitoring."""

    def close(self) -> None:
        """Close the connection; the broker re-delivers whatever was not acknowledged."""

    def describe(self) -> str:
        """Where it reads from, for log lines (no credentials)."""


class BridgeFailed(RuntimeError):
    """Too many consecutive failures: the process should exit non-zero and be restarted."""


# -- confirm-then-ack bookkeeping ----------------------------------------------------------------
_PENDING, _CONFIRMED, _FAILED = 0, 1, 2


class AckTracker:
    """Which source messages may be acknowledged, given delivery reports in any order.

    Per stream, tags are registered in the order they were produced (= the order the source
    delivered them). `settle()` walks each stream from its oldest tag: a run of confirmed tags
    becomes one ack of the run's last tag with multiple=True; a failed tag becomes a nack
    (requeue) of that tag alone; it stops at the first tag still pending. So a tag is never
    acknowledged before every earlier tag of its stream was confirmed or nacked, and a failed
    record is never acknowledged.
    """

    def __init__(self):
        self._streams: dict[Hashable, tuple[deque, dict]] = {}  # stream → (tags in order, tag → (state, queue))

    def add(self, stream: Hashable, tag: int, queue: str) -> None:
        order, states = self._streams.setdefault(stream, (deque(), {}))
        if order and tag <= order[-1]:
            raise ValueError(f"tag {tag} of stream {stream!r} after {order[-1]}: tags must increase")
        order.append(tag)
        states[tag] = (_PENDING, queue)

    def resolve(self, stream: Hashable, tag: int, ok: bool) -> bool:
        """Record a delivery report; False if the stream is gone (its source connection was lost:
        the source re-delivers that message, so there is nothing to acknowledge)."""
        entry = self._streams.get(stream)
        if entry is None or tag not in entry[1]:
            return False
        states = entry[1]
        states[tag] = (_CONFIRMED if ok else _FAILED, states[tag][1])
        return True

    def settle(self) -> list[tuple[str, Hashable, int, list[str]]]:
        """The acks and nacks now due, in order: ("ack", stream, tag, queues covered) with
        multiple=True meaning, or ("nack", stream, tag, [queue]). Removes them from the tracker."""
        actions = []
        for stream, (order, states) in self._streams.items():
            run: list[str] = []  # queues of the confirmed run at the head
            last = None
            while order:
                tag = order[0]
                state, queue = states[tag]
                if state == _PENDING:
                    break
                order.popleft()
                del states[tag]
                if state == _CONFIRMED:
                    run.append(queue)
                    last = tag
                else:
                    if run:
                        actions.append(("ack", stream, last, run))
                        run, last = [], None
                    actions.append(("nack", stream, tag, [queue]))
            if run:
                actions.append(("ack", stream, last, run))
        return actions

    def forget(self, stream: Hashable) -> int:
        """Drop a stream whose connection is gone; returns how many tags were still open."""
        entry = self._streams.pop(stream, None)
        return len(entry[0]) if entry else 0

    def forget_all_but(self, keep: Hashable | None) -> int:
        return sum(self.forget(stream) for stream in [s for s in self._streams if s != keep])

    def pending_by_queue(self) -> dict[str, int]:
        held: dict[str, int] = {}
        for _order, states in self._streams.values():
            for _state, queue in states.values():
                held[queue] = held.get(queue, 0) + 1
        return held

    def pending(self) -> int:
        return sum(len(order) for order, _ in self._streams.values())

    def streams(self) -> list[Hashable]:
        return list(self._streams)


# -- the record: key and headers -----------------------------------------------------------------
def record_key(body: bytes) -> bytes | None:
    """`source:id` when the body is a JSON object with both fields (demands.kafka.demand_key),
    else None: the record goes unkeyed, and the consumer rejects it with its reason."""
    try:
        demand = orjson.loads(body)
    except (orjson.JSONDecodeError, TypeError):
        return None
    try:
        return demand_key(demand)
    except Exception:  # e.g. a field whose str() fails: unkeyed, the consumer says why
        return None


def header_value(value) -> bytes:
    """A source header value as Kafka header bytes: bytes as they are, text as UTF-8, the rest
    (numbers, booleans, tables, lists, timestamps) as JSON, or str() when JSON cannot say it."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, (int, float)):
        return str(value).encode()
    try:
        return json.dumps(value, ensure_ascii=False, default=str).encode()
    except (TypeError, ValueError):
        return str(value).encode()


# -- counters ------------------------------------------------------------------------------------
QUEUE_COUNTERS = ("received", "forwarded", "acked", "failed", "nacked")


class BridgeStats:
    """Counters of one bridge, read by monitoring through `snapshot()` (from any thread: the bridge
    only ever replaces or increments plain values, and a snapshot copies them)."""

    def __init__(self, *, kind: str, queues: Iterable[str], topic: str):
        self.kind, self.topic = kind, topic
        self.started_at = time.time()
        self.queues: dict[str, dict[str, int]] = {queue: dict.fromkeys(QUEUE_COUNTERS, 0) for queue in queues}
        self.source_state = "connecting"  # connecting | connected | down | stopped
        self.kafka_state = "unknown"  # unknown | up | down
        self.source_failures = 0  # consecutive
        self.kafka_failures = 0  # consecutive
        self.reconnects = 0
        self.orphaned = 0  # confirmed by Kafka after their source channel was lost (re-delivered)
        self.in_flight = 0
        self.waiting = 0
        self.last_error = ""
        self.last_ack_at: float | None = None
        self.depth: dict[str, dict[str, int]] = {}

    def queue(self, name: str) -> dict[str, int]:
        counters = self.queues.get(name)
        if counters is None:
            counters = self.queues[name] = dict.fromkeys(QUEUE_COUNTERS, 0)
        return counters

    def total(self, counter: str) -> int:
        return sum(counters[counter] for counters in list(self.queues.values()))

    def snapshot(self) -> dict:
        return {
            "kind": self.kind,
            "topic": self.topic,
            "pid": os.getpid(),
            "started_at": self.started_at,
            "source_state": self.source_state,
            "kafka_state": self.kafka_state,
            "source_failures": self.source_failures,
            "kafka_failures": self.kafka_failures,
            "reconnects": self.reconnects,
            "orphaned": self.orphaned,
            "in_flight": self.in_flight,
            "waiting": self.waiting,
            "last_error": self.last_error,
            "last_ack_at": self.last_ack_at,
            "totals": {counter: self.total(counter) for counter in QUEUE_COUNTERS},
            "queues": {name: dict(counters) for name, counters in list(self.queues.items())},
            "depth": {name: dict(values) for name, values in list(self.depth.items())},
        }


class StatsFile:
    """The counters as JSON, rewritten every few seconds (atomic rename): a heartbeat that a
    monitor outside the process can read (`bridge_amqp --stats-file`)."""

    def __init__(self, path: str, *, every: float = 5.0):
        self.path, self.every = path, every
        self._written = float("-inf")

    def write(self, snapshot: dict, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._written < self.every:
            return
        self._written = now
        tmp = f"{self.path}.tmp"
        try:
            with open(tmp, "w") as f:
                json.dump({**snapshot, "written_at": time.time()}, f)
            os.replace(tmp, self.path)
        except OSError as exc:
            logger.warning("could not write %s: %s", self.path, exc)


class BridgeReporting:
    """The Bridge's reporting, every loop turn (bridge.py): the stats file, the heartbeat hook
    every 5 s, a throughput line (with the queues' depth) every `stats_interval` seconds."""

    def _report(self) -> None:
        now = self.clock()
        if self.stats_file is not None:
            self.stats_file.write(self.stats.snapshot())
        if now >= self._next_beat:
            self._next_beat = now + 5.0
            self._beat(stopped=False)
        if now - self._last_stats < self.stats_interval:
            return
        elapsed = now - self._last_stats
        depth = ""
        if self.source.connected:
            try:
                self.stats.depth = self.source.depth()
                depth = "; queue depth " + ", ".join(f"{q}={d['messages']}" for q, d in self.stats.depth.items())
            except SourceUnavailable:
                pass  # noticed by the next poll
        logger.info(
            "throughput: %.1f msgs/s forwarded, %d acked, %d failed in the last %.0fs; %d in flight%s",
            self._window["forwarded"] / elapsed, self._window["acked"], self._window["failed"], elapsed,
            self._in_flight, depth,
        )
        self._window = dict.fromkeys(self._window, 0)
        self._last_stats = now

    def _beat(self, *, stopped: bool) -> None:
        """Hand the counters, and what each queue has in hand unacked, to the heartbeat hook."""
        if self.heartbeat is not None:
            held = self.tracker.pending_by_queue()
            for message in self._waiting:
                held[message.queue] = held.get(message.queue, 0) + 1
            self.heartbeat({**self.stats.snapshot(), "held": held}, stopped=stopped)
