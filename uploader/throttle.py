"""A bandwidth cap shared by every upload of a process (the daemon's ``bandwidth_limit``).

A token bucket, thread-safe because part bodies are read on aiohttp's executor threads; a
reader that is over budget sleeps on its own worker thread, never on the event loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Throttle:
    def __init__(
        self,
        rate_bytes_per_second: int,
        *,
        burst_bytes: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_bytes_per_second <= 0:
            raise ValueError("rate_bytes_per_second must be positive")
        self.rate = rate_bytes_per_second
        self.burst = burst_bytes or max(rate_bytes_per_second // 4, 256 * 1024)
        self._tokens = float(self.burst)
        self._stamp = clock()
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()

    def acquire_blocking(self, nbytes: int) -> None:
        """Take ``nbytes`` from the bucket, sleeping the calling thread until they are there."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= nbytes
            debt = -self._tokens
        if debt > 0:
            self._sleep(debt / self.rate)

    def __repr__(self) -> str:
        return f"Throttle(rate_bytes_per_second={self.rate})"
