"""Clocks that tests move by hand."""

from __future__ import annotations

import time


class ShiftedClock:
    """Wall-clock time plus an offset the test moves: the emulator's idea of "now"."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds
