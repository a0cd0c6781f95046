"""``PartSlots``: the semaphore that caps parts in flight across all jobs, and can be closed.

Every job's pipeline receives the same ``PartSlots`` and holds one slot per part it is sending.
asyncio's semaphore wakes waiters first-come first-served, so with each job keeping several part
workers waiting, free slots rotate between jobs: the share is fair without a scheduler of its own.

On shutdown ``close()`` stops handing out slots (new acquirers wait until they are cancelled),
and ``wait_idle()`` returns once every part already in flight has released its slot; ``drain``
does both, within a grace period. That is how SIGTERM "lets in-flight parts finish" without
starting new ones.
"""

from __future__ import annotations

import asyncio
from typing import Literal


class PartSlots(asyncio.Semaphore):
    def __init__(self, value: int) -> None:
        if value < 1:
            raise ValueError(f"parts in flight must be at least 1, got {value}")
        super().__init__(value)
        self.capacity = value
        self.in_use = 0
        self.closed = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._never = asyncio.Event()  # never set: closed acquirers park here until cancelled

    async def acquire(self) -> Literal[True]:
        while True:
            if self.closed:
                await self._never.wait()
            await super().acquire()
            if not self.closed:
                break
            super().release()  # closed while we waited: give the slot back and park
        self.in_use += 1
        self._idle.clear()
        return True

    def release(self) -> None:
        self.in_use -= 1
        if self.in_use == 0:
            self._idle.set()
        super().release()

    def close(self) -> None:
        self.closed = True

    async def wait_idle(self) -> None:
        await self._idle.wait()

    async def drain(self, grace_seconds: float, *, hurry: asyncio.Future[None] | None = None) -> None:
        """Close, then wait until the parts in flight are done, ``grace_seconds`` pass, or
        ``hurry`` is set (whichever comes first)."""
        self.close()
        idle = asyncio.ensure_future(self.wait_idle())
        try:
            waiters: list[asyncio.Future[None]] = [idle] if hurry is None else [idle, hurry]
            await asyncio.wait(waiters, timeout=grace_seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            idle.cancel()

    def __repr__(self) -> str:
        closed = ", closed" if self.closed else ""
        return f"PartSlots(in_use={self.in_use}/{self.capacity}{closed})"
