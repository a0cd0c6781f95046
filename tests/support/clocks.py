"""Clocks that tests move by hand."""

from __future__ import annotations

import asyncio
import time


class ShiftedClock:
    """Wall-clock time plus an offset the test moves: the emulator's idea of "now"."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class ManualClock:
    """Time that moves only when the test (``advance``) or the code under test (``sleep``) moves it.

    Pass the instance as a ``clock=``/``monotonic=`` and ``sleep``/``record`` as the ``sleep=``
    seam: ``sleep`` is for async code and takes its time at once; ``record`` is for blocking
    sleeps a test wants to see without taking them (time stays put).
    """

    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)  # still a suspension point, like a real sleep

    def record(self, seconds: float) -> None:
        self.slept.append(seconds)
