"""A bandwidth cap shared by every upload of a process.

A token bucket shared by every part of every upload: ``await acquire(n)`` on the event loop, or
``acquire_blocking(n)`` from a worker thread. Over budget, the caller sleeps off its own debt,
so the average rate converges on the cap however many parts draw from it. Each caller's wait
covers every byte taken before it, so callers are served in arrival order: concurrent streams
(parts, or the fault proxy's connections) share the rate fairly and none can starve another.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable


class Throttle:
    def __init__(
        self,
        rate_bytes_per_second: float,
        *,
        burst_bytes: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate_bytes_per_second <= 0:
            raise ValueError("rate_bytes_per_second must be positive")
        self.rate = rate_bytes_per_second
        self.burst = burst_bytes or max(rate_bytes_per_second // 4, 256 * 1024)
        self._tokens = float(self.burst)
        self._stamp = clock()
        self._clock = clock
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._lock = threading.Lock()

    def _take(self, nbytes: int) -> float:
        """Take ``nbytes`` (possibly into debt); seconds the caller must wait for them."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= nbytes
            return max(0.0, -self._tokens / self.rate)

    def acquire_blocking(self, nbytes: int) -> None:
        """Take ``nbytes``, sleeping the calling (worker) thread until they are there."""
        wait = self._take(nbytes)
        if wait:
            self._sleep(wait)

    async def acquire(self, nbytes: int) -> None:
        """Take ``nbytes``, sleeping this task (never the event loop) until they are there."""
        wait = self._take(nbytes)
        if wait:
            await self._async_sleep(wait)

    def __repr__(self) -> str:
        return f"Throttle(rate_bytes_per_second={self.rate})"
