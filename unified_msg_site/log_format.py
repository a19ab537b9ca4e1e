"""Log lines stay one line each: messages carry rejection reasons, sources and keys from input
anyone can send, and a CR/LF in them would forge a log line of the attacker's choosing."""

import logging


class SingleLineFormatter(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:
        # Tracebacks (added after this) keep their lines; the message itself is escaped.
        return super().formatMessage(record).replace("\r", "\\r").replace("\n", "\\n")
