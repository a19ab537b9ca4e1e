"""Read-ahead: the records that arrived while the database stored a batch are parsed meanwhile.

The consume loop hands what it read to one worker thread ("parse"), which parses the records,
checks them and applies the rules (`parse_batch(records, rules)`) while the loop's thread waits
on the database for the previous batch (the worker holds the GIL while it works; a wait on the
database does not). The rules are read in the loop's thread and handed over with the messages;
the worker never touches the Kafka consumer (a Message is a plain value once consumed). Nothing
read ahead is committed before it is stored; a batch read ahead when a stop comes is dropped,
uncommitted, and Kafka re-delivers it. If the worker's parse raises, the loop parses the batch
again in its own thread, where a failure is retried like any other.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

from confluent_kafka import Message

from .parse import ParsedBatch, parse_batch, record_from


def parse_messages(messages: list[Message], rules: list | None) -> ParsedBatch:
    """Kafka messages → a ParsedBatch."""
    return parse_batch([record_from(message) for message in messages], rules)


class ReadAhead:
    """One worker thread; `submit()` returns the parsing job, `result()` waits for it."""

    def __init__(self) -> None:
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parse")

    def submit(self, messages: list[Message], rules: list) -> Future:
        return self._worker.submit(parse_messages, messages, rules)

    def close(self) -> None:
        """Drop what has not started; wait for what has (it reads nothing shared)."""
        self._worker.shutdown(wait=True, cancel_futures=True)
