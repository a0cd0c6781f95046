"""Moving-average byte rates: bytes seen over the last ``window_seconds`` (default 20 s).

A sample is (monotonic time, bytes). The rate divides the bytes inside the window by the time
covered, which is the whole window once the meter has run that long and the time since the first
sample before that (at least one second, so the first burst does not read as a huge rate).
Single-threaded: use it from the event-loop thread only. Used by ``uploader.progress.Progress``
(the rate of one run) and by callers that add runs up (the rate of all of them together).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

Clock = Callable[[], float]


class RateMeter:
    def __init__(self, window_seconds: float = 20.0, clock: Clock = time.monotonic) -> None:
        if window_seconds <= 0:
            raise ValueError(f"window_seconds must be positive, got {window_seconds}")
        self.window_seconds = window_seconds
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque()
        self._bytes_in_window = 0
        self._first_sample_at: float | None = None

    def add(self, nbytes: int) -> None:
        now = self._clock()
        if self._first_sample_at is None:
            self._first_sample_at = now
        self._samples.append((now, nbytes))
        self._bytes_in_window += nbytes
        self._expire(now)

    def rate(self) -> float:
        """Bytes per second over the window; 0.0 before any sample or after a quiet window."""
        now = self._clock()
        self._expire(now)
        if self._first_sample_at is None or not self._samples:
            return 0.0
        covered = min(self.window_seconds, max(1.0, now - self._first_sample_at))
        return self._bytes_in_window / covered

    def history_seconds(self) -> float:
        """How long the meter has been measuring (capped at the window)."""
        if self._first_sample_at is None:
            return 0.0
        return min(self.window_seconds, self._clock() - self._first_sample_at)

    def reset(self) -> None:
        self._samples.clear()
        self._bytes_in_window = 0
        self._first_sample_at = None

    def _expire(self, now: float) -> None:
        horizon = now - self.window_seconds
        while self._samples and self._samples[0][0] <= horizon:
            _, nbytes = self._samples.popleft()
            self._bytes_in_window -= nbytes

    def __repr__(self) -> str:
        return f"RateMeter(window={self.window_seconds:g}s, rate={self.rate():.0f} B/s)"
