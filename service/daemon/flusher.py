"""Persisting and publishing jobs' progress, batched.

A job's events arrive many times a second; SQLite and the event streams need them far less
often. The flusher keeps a dirty set: ``mark(job)`` adds to it, and ``run_forever`` writes each
dirty job to the ``JobStore`` and publishes its snapshot to the ``Broker`` at most once per
``interval_seconds``. A failed write (a busy or full disk) keeps the job dirty for the next round
and never ends the loop. State changes do not wait: ``publish(job)`` sends a snapshot now,
``mark(job, at_once=True)`` cuts the pause short so the new state is saved within one write (a
process killed a moment after a job began uploading restarts it as uploading, not as the stage
before), and the scheduler flushes once more when it stops, shielded, so the last progress is
not lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from .broker import Broker
from .job_store import JobStore
from .jobs import Job
from .logfmt import kv

log = logging.getLogger(__name__)


class Flusher:
    def __init__(
        self,
        store: JobStore,
        broker: Broker,
        *,
        interval_seconds: float = 0.5,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.store = store
        self._broker = broker
        self._interval = interval_seconds
        self._sleep = sleep
        self._dirty: dict[str, Job] = {}
        self._wake = asyncio.Event()
        self._at_once = asyncio.Event()  # a state change is dirty: no pause before the next round

    def publish(self, job: Job) -> None:
        """Send the job's snapshot to subscribers now."""
        self._broker.publish(job.snapshot())

    def mark(self, job: Job, *, at_once: bool = False) -> None:
        """The job changed: save and publish it with the next flush (``at_once``: a change of
        state, which waits for no pause)."""
        self._dirty[job.id] = job
        self._wake.set()
        if at_once:
            self._at_once.set()

    def forget(self, job: Job) -> None:
        """The job's end is being recorded by its owner: no progress write may follow it."""
        self._dirty.pop(job.id, None)

    @property
    def pending(self) -> int:
        return len(self._dirty)

    async def run_forever(self) -> None:
        while True:
            await self._wake.wait()
            await self.flush()
            if self._at_once.is_set():  # a change of state came in during the flush
                continue
            # What batches the writes: one interval, cut short by a change of state.
            pause = asyncio.ensure_future(self._sleep(self._interval))
            state_changed = asyncio.ensure_future(self._at_once.wait())
            try:
                await asyncio.wait({pause, state_changed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in (pause, state_changed):
                    waiter.cancel()
                await asyncio.gather(pause, state_changed, return_exceptions=True)

    async def flush(self) -> None:
        self._wake.clear()
        self._at_once.clear()
        dirty, self._dirty = self._dirty, {}
        for job in dirty.values():
            self.publish(job)
            try:
                await self.store.save(job)
            except Exception as exc:  # progress only: try again with the next flush
                log.warning("saving job progress failed %s", kv(job=job.id, error=exc))
                self._dirty.setdefault(job.id, job)
                self._wake.set()
