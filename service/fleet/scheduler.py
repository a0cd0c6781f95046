"""A fleet worker's scheduler: jobs come from the shared queue, not from this process's.

``FleetScheduler`` is the daemon's ``Scheduler`` with three differences. A submitted job is only
inserted into the shared ``jobs`` table (the claim loop of whichever worker has a free slot and
can open the file runs it); nothing is resumed at start (a dead worker's jobs come back through
the claims once their leases run out). A claimed job runs with a lease keeper beside it: when the
lease is lost the job's task is cancelled before its next S3 call, and ``FencedJobStore`` writes
a job's row only under the lease this worker holds (fencing), so a worker that was taken over
never writes over its successor. The engine then resumes the same submission and the same
multipart upload from the parts acknowledged in the shared store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from service.daemon.job_states import QUEUED
from service.daemon.job_store import JobStore, update_statement
from service.daemon.jobs import Job
from service.daemon.logfmt import kv
from service.daemon.scheduler import DuplicateJob, JobFinished, Scheduler
from service.fleet.queue import Fleet, Lease, LeaseLost
from uploader.artifact import Artifact
from uploader.database import StateError
from uploader.errors import NotarydError
from uploader.fence import fenced_by

log = logging.getLogger("notaryd.fleet")
POLL_SECONDS = 1.0  # how often an idle worker looks for work (and a busy one for a free slot)


class HeldElsewhere(JobFinished):
    """A cancel for a job another live worker runs (answered 409, like an ended job)."""

    def __init__(self, job: Job) -> None:
        NotarydError.__init__(self, f"job {job.id} runs on worker {job.worker or 'another worker'}; "
                              "cancel it there (its GET /v1/jobs entry names the worker)")
        self.job = job


class FencedJobStore(JobStore):
    """``JobStore`` whose writes of a job's row go through the lease this worker holds on it."""

    def __init__(self, fleet: Fleet) -> None:
        super().__init__(fleet.db)
        self.fleet = fleet
        self.leases: dict[str, Lease] = {}

    async def save(self, job: Job) -> None:
        lease = self.leases.get(job.id)
        if lease is None:
            if job.started_at is None:  # queued here, never claimed: no one else writes it yet
                await super().save(job)
            return
        try:
            async with self.fleet.fenced(lease) as tx:
                await tx.execute(*update_statement(job))
                if job.terminal:  # the lease ends; its row stays to say who ran the job
                    await tx.execute("UPDATE fleet_leases SET lease_until = 0 WHERE job = ?", (job.id,))
            if job.terminal:  # written for good: later saves of it (bookkeeping) are not ours
                self.leases.pop(job.id, None)
        except LeaseLost as lost:
            log.warning("%s; its state here is not written", lost)


    async def get(self, job_id: str) -> Job | None:
        job = await super().get(job_id)
        return (await self._named([job]))[0] if job is not None else None

    async def recent(self, limit: int = 200) -> list[Job]:
        return await self._named(await super().recent(limit))

    async def _named(self, jobs: list[Job]) -> list[Job]:
        """``jobs`` with the worker that holds (or last held) each."""
        holders = await self.fleet.holders()
        for job in jobs:
            job.worker = holders.get(job.id, job.worker)
        return jobs


def may_take(roots: Sequence[Path]) -> Any:
    """Whether this worker may run a job on ``path``: ``Artifact.open`` with this worker's roots
    accepts it here (under them, no links, a regular file or a bundle's folder). Off the loop."""
    def check(path: Path) -> bool:
        try:
            Artifact.open(path, roots)
        except (NotarydError, OSError, ValueError):
            return False
        return True
    return check


class FleetScheduler(Scheduler):
    def __init__(self, *args: Any, fleet: Fleet, store: FencedJobStore, roots: Sequence[Path],
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fleet = fleet
        self._store = store
        self._may_take = may_take(roots)
        self._wake = asyncio.Event()
        self._keepers: dict[str, asyncio.Task[None]] = {}
        self.queue_depth = 0  # notaryd_queue_depth, as of the last heartbeat
        self.live_workers = 0  # notaryd_fleet_workers

    async def __aenter__(self) -> FleetScheduler:
        await super().__aenter__()
        self._service_tasks += [
            self._tg.create_task(self._claims(), name="fleet-claims"),
            self._tg.create_task(self._heartbeats(), name="fleet-heartbeat"),
        ]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await super().__aexit__(*exc)
        finally:
            await self.fleet.db.close()

    async def resume(self) -> list[Job]:
        log.info("fleet worker %s: jobs come from the shared queue", self.fleet.worker)
        return []

    async def submit(self, path: Path, **kwargs: Any) -> Job:
        try:
            job = await super().submit(path, **kwargs)
        except sqlite3.IntegrityError:  # another worker queued this path a moment ago
            other = next((job for job in await self.registry.store.unfinished() if job.path == path), None)
            if other is None:
                raise
            raise DuplicateJob(other) from None
        with contextlib.suppress(StateError):
            await self.fleet.announce()
        return job

    async def cancel(self, job_id: str) -> Job:
        """Cancel a job this worker runs, or one no live worker holds (taking its lease first,
        so the cancellation is a fenced write); refuse one another worker runs."""
        job = await self.registry.get(job_id)
        if not job.terminal and job.id not in self._tasks and job.id not in self._store.leases:
            lease = await self.fleet.take(job.id, job.path)
            if lease is None:
                raise HeldElsewhere(job)
            self._store.leases[job.id] = lease
        return await super().cancel(job_id)

    def _enqueue(self, job: Job) -> None:
        self.registry.remove(job)  # held here again if this worker claims it
        self._wake.set()

    async def _claims(self) -> None:
        with contextlib.suppress(StateError):
            await self.fleet.listen(self._wake.set)
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_SECONDS):
                    await self._wake.wait()
            self._wake.clear()
            while not self.closed and len(self._tasks) + self._queue.qsize() < self.max_jobs:
                try:
                    lease = await self.fleet.claim(self._may_take)
                except StateError as error:
                    log.warning("claiming a job failed: %s", error)
                    break
                if lease is None or not await self._start(lease):
                    break

    async def _start(self, lease: Lease) -> bool:
        job = await self.registry.store.get(lease.job)
        if job is None or job.terminal:
            return True
        self._store.leases[job.id] = lease
        job.worker = self.fleet.worker
        if job.state is not QUEUED:
            log.info("taking over job %s", kv(job=job.id, was=job.state))
            job.move_to(QUEUED)
        log.info("job claimed %s", kv(job=job.id, worker=self.fleet.worker, generation=lease.generation))
        self.registry.add(job)
        self._keepers[job.id] = self._tg.create_task(self._keep(job, lease), name=f"lease-{job.id}")
        self._queue.put_nowait(job)
        return True

    async def _keep(self, job: Job, lease: Lease) -> None:
        lost = await self.fleet.keep(lease)
        log.warning("%s; stopping it here", lost)
        self._store.leases.pop(job.id, None)
        task = self._tasks.get(job.id)
        if task is not None:
            task.cancel()  # before its next S3 call; its writes are fenced off already
        self.registry.remove(job)

    async def _run(self, job: Job) -> None:
        lease = self._store.leases.get(job.id)
        try:
            # Every write of the library's stores and every S3 call of the run checks the lease.
            with fenced_by(self.fleet.fence(lease)) if lease is not None else contextlib.nullcontext():
                await super()._run(job)
        finally:
            keeper = self._keepers.pop(job.id, None)
            if keeper is not None:
                keeper.cancel()
            lease = self._store.leases.pop(job.id, None)
            if lease is not None and not job.terminal:  # interrupted (shutdown): free it now
                with contextlib.suppress(LeaseLost, StateError):
                    await asyncio.shield(self.fleet.let_go(lease))
            self._wake.set()

    async def _heartbeats(self) -> None:
        while True:
            try:
                await self.fleet.heartbeat()
                self.queue_depth = await self.fleet.queue_depth()
                self.live_workers = await self.fleet.live_workers()
            except StateError as error:
                log.warning("fleet heartbeat failed: %s", error)
            await asyncio.sleep(self.fleet.lease_seconds / 3)
