"""Several bridge processes from one command (`bridge_amqp --processes N`).

pika decodes every frame in pure Python (~35–40 µs a message), so one bridge process is bound to
one core; N processes on one queue each hold their own connection, channel and prefetch, and
RabbitMQ spreads deliveries over them (round-robin among consumers with free prefetch). Each
child is a whole bridge with its own confirm-then-ack bookkeeping and its own heartbeat row, so
nothing changes in the promise: a message is acked only on the channel that received it, after
Kafka confirmed it and every earlier one there.

How the parent behaves in production: it forks the children before any client exists (no Kafka
producer, no AMQP or database connection crosses a fork), forwards SIGTERM/SIGINT to them (each
drains what it has in flight, acks it and exits 0), and waits. When one child exits non-zero
(BridgeFailed: a broker gone for long) or is killed, the parent stops the others and exits 1, so
the supervisor restarts the set — one unit to restart, not N.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable

from django.db import connections

logger = logging.getLogger(__name__)


def run_forked(count: int, target: Callable[[int], None]) -> int:
    """Run `target(worker_number)` in `count` child processes; returns 0 when every child exited
    0, else 1. A child's exception is its exit status 1 (and its traceback in the log)."""
    connections.close_all()  # a child must not share the parent's database socket
    children: dict[int, int] = {}
    for number in range(count):
        pid = os.fork()
        if pid == 0:  # the child
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            status = 1
            try:
                target(number)
                status = 0
            except SystemExit as exc:
                status = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                logger.exception("bridge worker %d failed", number)
            finally:
                logging.shutdown()
                os._exit(status)
        children[pid] = number

    stopping = []

    def forward(signum, _frame):
        stopping.append(signum)
        for pid in list(children):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    previous = {signum: signal.signal(signum, forward) for signum in (signal.SIGTERM, signal.SIGINT)}
    logger.info("bridge: %d worker processes (pids %s)", count, ", ".join(map(str, children)))
    failed = False
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        number = children.pop(pid, None)
        code = os.waitstatus_to_exitcode(status)
        if code == 0 or (stopping and code in (-signal.SIGTERM, -signal.SIGINT)):  # stopped before its handler was set
            continue
        logger.error("bridge worker %s (pid %d) exited %d; stopping the others", number, pid, code)
        if not stopping:
            forward(signal.SIGTERM, None)
        failed = True
    for signum, handler in previous.items():
        signal.signal(signum, handler)
    return 1 if failed else 0
