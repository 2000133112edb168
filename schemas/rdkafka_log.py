"""librdkafka's own log lines, through Python logging and without repeats.

By default librdkafka prints its log straight to stderr (``%3|...|FAIL|...``). While a broker is
unreachable it logs a failed connection attempt several times a second, which floods the gateway's
log during an outage that the spool handles as designed. Given as the ``logger`` setting of a
client, :class:`LibrdkafkaLog` passes each distinct line (digits ignored: timings, ports) on at its
level at most once per ``every_s`` and at DEBUG in between. The lines are served by ``poll()``.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

logger = logging.getLogger(__name__)

_DIGITS = re.compile(r"\d+")


class LibrdkafkaLog:
    """A ``logger`` for confluent-kafka clients (it calls ``log(level, fmt, facility, name, text)``)."""

    def __init__(self, target: logging.Logger | None = None, every_s: float = 30.0) -> None:
        self.target = target or logger
        self.every_s = every_s
        self._last: dict[str, float] = {}

    def log(self, level: int, fmt: str, *args: Any) -> None:
        key = _DIGITS.sub("#", " ".join(str(a) for a in args[:1] + args[2:]))  # without the client name
        now = time.monotonic()
        if now - self._last.get(key, -self.every_s) >= self.every_s:
            if len(self._last) > 1000:  # bounded: forget what is old
                self._last = {k: t for k, t in self._last.items() if now - t < self.every_s}
            self._last[key] = now
            self.target.log(level, fmt, *args)
        else:
            self.target.debug(fmt, *args)
