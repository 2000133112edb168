"""Token bucket: at most ``rate`` units per second on average, bursts up to ``capacity``."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """Admit units (sensor values) at ``rate`` per second; a caller that overdraws waits.

    The bucket starts full. ``acquire(n)`` takes ``n`` tokens, letting the balance go negative, and
    then waits until the balance is back to zero, so by the time any call returns the units admitted
    since ``start`` are at most ``capacity + rate * elapsed`` (``n`` larger than ``capacity`` works).
    ``wait(seconds)`` may return early (e.g. a Kafka poll that served a delivery report); the bucket
    keeps waiting until the deadline.
    """

    def __init__(
        self,
        rate: float,
        capacity: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], object] = time.sleep,
    ) -> None:
        if rate <= 0:
            msg = f"rate must be > 0, got {rate}"
            raise ValueError(msg)
        self.rate = float(rate)
        self.capacity = float(capacity if capacity is not None else rate)
        if self.capacity <= 0:
            msg = f"capacity must be > 0, got {capacity}"
            raise ValueError(msg)
        self._clock = clock
        self._wait = wait
        self._tokens = self.capacity
        self._last = clock()

    def acquire(self, n: float = 1.0) -> float:
        """Take ``n`` tokens; return the seconds spent waiting for them."""
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= n
        if self._tokens >= 0:
            return 0.0
        deadline = now + (-self._tokens / self.rate)
        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                break
            self._wait(remaining)
        return self._clock() - now

    @property
    def tokens(self) -> float:
        """Current balance (negative while a caller waits off a debt)."""
        return self._tokens
