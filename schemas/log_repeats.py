"""Log lines that repeat during an outage, each passed on once per ``every_s``.

While a broker is unreachable the Kafka clients log a failed connection several times a second:
librdkafka prints ``%3|...|FAIL|...`` straight to stderr, aiokafka (under Faust) logs an error per
attempt. That floods a component's log (millions of lines a day) during an outage the pipeline
rides out as designed. Lines are compared with their digits ignored (timings, ports, counts).

* :class:`LibrdkafkaLog`, given as the ``logger`` setting of a confluent-kafka client, passes
  librdkafka's lines to Python logging: each distinct line at its level at most once per
  ``every_s``, at DEBUG in between. The lines are served by ``poll()``.
* :class:`RepeatFilter`, on a handler, lets a client library's WARNING-or-worse record through once
  per ``every_s`` per logger and message, and drops the repeats in between (lower levels, and other
  loggers, pass untouched).
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

logger = logging.getLogger(__name__)

_DIGITS = re.compile(r"\d+")


class Repeats:
    """Which texts (digits ignored) were seen less than ``every_s`` ago; bounded memory."""

    def __init__(self, every_s: float = 30.0) -> None:
        self.every_s = every_s
        self._last: dict[str, float] = {}

    def first(self, text: str) -> bool:
        """True if ``text`` was not seen in the last ``every_s`` (and remember it now)."""
        key = _DIGITS.sub("#", text)
        now = time.monotonic()
        if now - self._last.get(key, -self.every_s) < self.every_s:
            return False
        if len(self._last) > 1000:  # forget what is old
            self._last = {k: t for k, t in self._last.items() if now - t < self.every_s}
        self._last[key] = now
        return True


class LibrdkafkaLog:
    """A ``logger`` for confluent-kafka clients (it calls ``log(level, fmt, facility, name, text)``)."""

    def __init__(self, target: logging.Logger | None = None, every_s: float = 30.0) -> None:
        self.target = target or logger
        self.repeats = Repeats(every_s)

    def log(self, level: int, fmt: str, *args: Any) -> None:
        text = " ".join(str(a) for a in args[:1] + args[2:])  # without the client's name
        if self.repeats.first(text):
            self.target.log(level, fmt, *args)
        else:
            self.target.debug(fmt, *args)


class RepeatFilter(logging.Filter):
    """Drop a WARNING-or-worse record of the loggers under ``prefixes`` (a client library's) that
    repeats one of the same logger within ``every_s``. Other loggers pass untouched: Millstream's
    own warnings are each worth reading."""

    def __init__(self, prefixes: tuple[str, ...], every_s: float = 30.0) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.repeats = Repeats(every_s)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.name.startswith(self.prefixes):
            return True
        return self.repeats.first(f"{record.name}: {record.getMessage()}")
