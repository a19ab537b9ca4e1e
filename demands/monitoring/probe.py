"""Broker probing in a child process: what monitoring asks Kafka, asked where a crash costs one sample.

Monitoring needs three things from the cluster: its metadata (brokers, controller, partition
leaders and in-sync replicas), each partition's earliest/latest offsets, and the committed offsets
of the consumer groups it watches. librdkafka has crashed whole processes on exactly these paths:
the admin API's coordinator-targeted requests (ListConsumerGroupOffsets and friends) dereference a
NULL group handle on NOT_COORDINATOR / COORDINATOR_LOAD_IN_PROGRESS (librdkafka #5040) and abort
on an assertion when a broker restarts mid-request (#4605, #3663). So:

- No coordinator-targeted admin request is made at all. Committed offsets are read the way a
  consumer reads its own: a `Consumer` with the group's `group.id` that never subscribes, asked
  `committed()`; offsets come from ListOffsets (partition leaders), metadata from any broker.
- All of it runs in a child process (`python -m demands.monitoring.probe`, no Django: it gets its
  client configuration on the command line). The parent (`ProbeClient`, one per process) sends one
  JSON request line and waits, bounded, for one JSON answer line. A native crash, a hang or a
  garbled answer kills only the child: that request fails ("probe child died: signal 11"), the
  monitor records no sample for that tick, and the next request starts a new child. The web
  server's pages, websockets and the embedded consume loop never share a process with these calls.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time

logger = logging.getLogger(__name__)

REQUEST_TIMEOUT = 15.0  # seconds a child may take for one answer before it is killed


# -- the child ---------------------------------------------------------------------------------------

class _Child:
    """Runs in the child process: answers requests with confluent_kafka, one at a time."""

    def __init__(self, config: dict):
        from confluent_kafka.admin import AdminClient

        self.refused: str | None = None  # librdkafka's words for a refused login, when that is why
        self.config = {**config, "log_level": 3, "error_cb": self._on_error}
        self.admin = AdminClient(self.config)
        self.consumers: dict[str, object] = {}

    def _on_error(self, error) -> None:
        if "uthentication" in error.str():
            self.refused = error.str()

    def consumer(self, group: str):
        from confluent_kafka import Consumer

        if group not in self.consumers:
            if len(self.consumers) >= 20:  # groups come and go (benchmarks, tests): bound the handles
                for old in list(self.consumers.values()):
                    old.close()
                self.consumers.clear()
            self.consumers[group] = Consumer({
                **self.config, "group.id": group, "enable.auto.commit": False, "enable.auto.offset.store": False,
            })
        return self.consumers[group]

    def metadata(self, timeout: float) -> dict:
        from confluent_kafka import KafkaException

        self.refused = None
        try:
            metadata = self.admin.list_topics(timeout=timeout)
        except KafkaException:
            self.admin.poll(0.2)  # error callbacks are served on poll: a refused login says so there
            if self.refused:
                raise KafkaException(f"authentication failed: {self.refused}") from None
            raise
        topics = {}
        for name, topic in metadata.topics.items():
            if topic.error is not None or name.startswith("__"):
                continue
            topics[name] = [
                [number, part.leader, list(part.replicas), list(part.isrs)]
                for number, part in sorted(topic.partitions.items())
            ]
        return {
            "brokers": sorted([broker.id, f"{broker.host}:{broker.port}"] for broker in metadata.brokers.values()),
            "controller": metadata.controller_id,
            "topics": topics,
        }

    def lag(self, group: str, topics: list[str], timeout: float, metadata: dict) -> list:
        from confluent_kafka import TopicPartition
        from confluent_kafka.admin import OffsetSpec

        partitions = [TopicPartition(topic, row[0]) for topic in topics for row in metadata["topics"].get(topic, ())]
        if not partitions:
            return []
        committed = {
            (tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else None)
            for tp in self.consumer(group).committed(partitions, timeout=timeout)
        }

        def offsets(spec):
            futures = self.admin.list_offsets({tp: spec for tp in partitions}, request_timeout=timeout)
            return {(tp.topic, tp.partition): future.result().offset for tp, future in futures.items()}

        highs, lows = offsets(OffsetSpec.latest()), offsets(OffsetSpec.earliest())
        return [[tp.topic, tp.partition, committed.get((tp.topic, tp.partition)), lows[(tp.topic, tp.partition)],
                 highs[(tp.topic, tp.partition)]] for tp in partitions]

    def answer(self, request: dict) -> dict:
        timeout = float(request.get("timeout", 5.0))
        if request.get("crash"):  # tests: a native crash, as librdkafka's would be
            os.kill(os.getpid(), signal.SIGSEGV)
        metadata = self.metadata(timeout)
        answer = {"ok": True, "cluster": metadata, "lag": {}, "lag_errors": {}}
        for group, topics in (request.get("groups") or {}).items():
            try:  # a coordinator that is down fails its group's offsets, not the cluster's metadata
                answer["lag"][group] = self.lag(group, topics, timeout, metadata)
            except Exception as exc:
                answer["lag_errors"][group] = f"{type(exc).__name__}: {exc}"[:500]
        return answer


def main(argv: list[str]) -> int:
    config = json.loads(argv[1]) if len(argv) > 1 else {}
    child = None
    for line in sys.stdin:
        try:
            request = json.loads(line)
            if child is None:
                child = _Child(config)
            answer = child.answer(request)
        except Exception as exc:  # an answer, not a crash: the parent reports it as a failed sample
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    return 0


# -- the parent --------------------------------------------------------------------------------------

class ProbeFailed(RuntimeError):
    """The broker could not be asked (unreachable, refused, or the child died); the reason says which."""


class ProbeClient:
    """Asks a child process. Thread-safe (one request at a time); the child is started on first use
    and again after it died."""

    def __init__(self, config: dict | None = None, *, timeout: float = REQUEST_TIMEOUT):
        self._config = config
        self.timeout = timeout
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()

    @property
    def config(self) -> dict:
        if self._config is None:
            from demands.kafka import client_config

            self._config = client_config()
        # Only plain values cross to the child (a logger object or callback would not).
        return {key: value for key, value in self._config.items() if isinstance(value, (str, int, float, bool))}

    def ask(self, *, groups: dict[str, list[str]] | None = None, timeout: float = 5.0, crash: bool = False) -> dict:
        """The cluster's metadata and, per group, [topic, partition, committed, low, high] rows."""
        request = json.dumps({"groups": groups or {}, "timeout": timeout, "crash": crash}) + "\n"
        with self._lock:
            process = self._child()
            try:
                process.stdin.write(request)
                process.stdin.flush()
                line = self._read_line(process, deadline=time.monotonic() + max(self.timeout, timeout * 3))
            except (BrokenPipeError, OSError, ProbeFailed) as exc:
                reason = self._reap(process)
                raise ProbeFailed(f"{reason or exc}") from None
        try:
            answer = json.loads(line)
        except ValueError:
            self.close()
            raise ProbeFailed(f"probe child answered garbage: {line[:200]!r}") from None
        if not answer.get("ok"):
            raise ProbeFailed(answer.get("error") or "probe failed")
        return answer

    def _child(self) -> subprocess.Popen:
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "demands.monitoring.probe", json.dumps(self.config)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,  # Ctrl-C in a terminal reaches the parent, which ends the child
            )
        return self._process

    @staticmethod
    def _read_line(process: subprocess.Popen, *, deadline: float) -> str:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProbeFailed("probe child did not answer in time")
            ready, _, _ = select.select([process.stdout], [], [], min(left, 1.0))
            if ready:
                line = process.stdout.readline()
                if not line:
                    raise ProbeFailed("probe child closed its output")
                return line

    def _reap(self, process: subprocess.Popen) -> str:
        """Kill (if alive) and describe the child's end; the next request starts a new one."""
        if process.poll() is None:
            process.kill()
        try:
            code = process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "probe child did not exit"
        self._process = None
        reason = f"probe child died: signal {-code}" if code < 0 else f"probe child exited with {code}"
        logger.warning("%s; the next sample starts a new one", reason)
        return reason

    def close(self) -> None:
        with self._lock:
            process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.stdin.close()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()


_shared: ProbeClient | None = None
_shared_lock = threading.Lock()


def shared_probe() -> ProbeClient:
    """The process's probe (the monitor, /readyz and the cluster view share one child)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = ProbeClient()
        return _shared


if __name__ == "__main__":
    sys.exit(main(sys.argv))
