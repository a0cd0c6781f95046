"""Persisting and publishing jobs' progress, batched.

A job's events arrive many times a second; SQLite and the event streams need them far less
often. The flusher keeps a dirty set: ``mark(job)`` adds to it, and ``run_forever`` writes each
dirty job to the ``JobStore`` and publishes its snapshot to the ``Broker`` at most once per
``interval_seconds``. A failed write (a busy or full disk) keeps the job dirty for the next round
and never ends the loop. State changes do not wait: ``publish(job)`` sends a snapshot now, and
the scheduler flushes once more when it stops, shielded, so the last progress is not lost.
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

    def publish(self, job: Job) -> None:
        """Send the job's snapshot to subscribers now."""
        self._broker.publish(job.snapshot())

    def mark(self, job: Job) -> None:
        """The job changed: save and publish it with the next flush."""
        self._dirty[job.id] = job
        self._wake.set()

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
            await self._sleep(self._interval)  # what batches the writes

    async def flush(self) -> None:
        self._wake.clear()
        dirty, self._dirty = self._dirty, {}
        for job in dirty.values():
            self.publish(job)
            try:
                await self.store.save(job)
            except Exception as exc:  # progress only: try again with the next flush
                log.warning("saving job progress failed %s", kv(job=job.id, error=exc))
                self._dirty.setdefault(job.id, job)
                self._wake.set()
