"""The job scheduler: a FIFO queue of jobs run under global limits, each task owned.

Theory of operation
-------------------
* ``Scheduler`` is an async context manager that owns one ``asyncio.TaskGroup``. Inside it run a
  dispatcher (takes queued jobs in order and starts at most ``max_jobs`` at once), the
  ``Flusher`` (persists progress and publishes snapshots, batched) and one task per running job.
* What a job's task does, from its start to its recorded outcome, is ``JobExecutor.run``
  (``execution.py``); the jobs themselves live in the ``JobRegistry``.
* The runners share the daemon-wide ``PartSlots`` (parts in flight across all jobs), bandwidth
  throttle and HTTP session, which the runner factory closes over; that sharing is what keeps
  jobs fair to each other.
* ``cancel`` cancels a running job's task (which aborts its upload and records the
  cancellation), or ends a queued one at once.
* ``drain(grace)``: refuse new jobs, close the part slots (no new parts start), wait up to
  ``grace`` seconds for parts in flight, then cancel the job tasks. Interrupted jobs keep their
  running state in SQLite and ``resume()`` puts them back in the queue on the next start; the
  pipeline then continues the same submission and upload from its own saved state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from pathlib import Path
from types import TracebackType

from uploader.errors import NotarydError
from uploader.progress import Progress
from uploader.source_file import FileIdentity

from .execution import JobExecutor
from .job_options import JobOptions
from .job_states import QUEUED
from .jobs import Job, new_job_id
from .logfmt import kv
from .registry import JobRegistry
from .slots import PartSlots

log = logging.getLogger(__name__)


class SchedulerClosed(NotarydError):
    def __init__(self) -> None:
        super().__init__("notaryd is shutting down and takes no new jobs; submit again once it is back")


class DuplicateJob(NotarydError):
    def __init__(self, job: Job) -> None:
        super().__init__(
            f"{job.path} is already being notarised by job {job.id} ({job.state}); "
            f"wait for it or cancel it with `notaryd cancel {job.id}`"
        )
        self.job = job


class JobFinished(NotarydError):
    def __init__(self, job: Job) -> None:
        super().__init__(f"job {job.id} already ended ({job.state}); there is nothing to cancel")
        self.job = job


class Scheduler:
    def __init__(
        self, registry: JobRegistry, executor: JobExecutor, *, part_slots: PartSlots, max_jobs: int
    ) -> None:
        if max_jobs < 1:
            raise ValueError(f"max_jobs must be at least 1, got {max_jobs}")
        self.registry = registry
        self._executor = executor
        self._flusher = executor.flusher
        self.part_slots = part_slots
        self.max_jobs = max_jobs
        self._queue: asyncio.Queue[Job] = asyncio.Queue()
        self._job_slots = asyncio.Semaphore(max_jobs)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._cancel_requested: set[str] = set()
        self._tg = asyncio.TaskGroup()
        self._service_tasks: list[asyncio.Task[None]] = []
        self.closed = False

    async def __aenter__(self) -> Scheduler:
        await self._tg.__aenter__()
        self._service_tasks = [
            self._tg.create_task(self._dispatch(), name="scheduler-dispatch"),
            self._tg.create_task(self._flusher.run_forever(), name="scheduler-flush"),
        ]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.closed = True
        for task in (*self._tasks.values(), *self._service_tasks):
            task.cancel()
        try:
            await self._tg.__aexit__(exc_type, exc, tb)
        finally:
            await asyncio.shield(self._flusher.flush())

    async def resume(self) -> list[Job]:
        """Queue again every job an earlier daemon left unfinished, oldest first."""
        jobs = await self.registry.store.unfinished()
        for job in jobs:
            log.info("resuming job %s", kv(job=job.id, path=job.path, was=job.state))
            job.move_to(QUEUED)
            self.registry.add(job)
            await self.registry.store.save(job)
            self._queue.put_nowait(job)
        return jobs

    async def drain(self, grace_seconds: float, *, hurry: asyncio.Future[None] | None = None) -> None:
        """Stop intake, let parts in flight finish for up to ``grace_seconds``, stop the jobs.

        ``hurry`` (e.g. a second SIGTERM) ends the wait for parts in flight early.
        """
        self.closed = True
        running, started = len(self._tasks), time.monotonic()
        await self.part_slots.drain(grace_seconds, hurry=hurry)
        if self.part_slots.in_use:
            log.warning("abandoning parts in flight %s",
                        kv(parts=self.part_slots.in_use, grace_seconds=grace_seconds))
        log.info("stopping jobs %s",
                 kv(jobs=running, waited_seconds=round(time.monotonic() - started, 2)))
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    # the API's queries, answered by the registry

    def jobs(self) -> list[Job]:
        return self.registry.jobs()

    async def get(self, job_id: str) -> Job:
        return await self.registry.get(job_id)

    async def recent(self, limit: int = 200) -> list[Job]:
        return await self.registry.recent(limit)

    async def log_path(self, job: Job) -> Path | None:
        return await self.registry.log_path(job)

    async def submit(
        self, path: Path, *, name: str | None = None, webhook: str | None = None,
        skip_preflight: bool = False, options: JobOptions | None = None, size: int,
        identity: FileIdentity | None = None,
    ) -> Job:
        if self.closed:
            raise SchedulerClosed()
        if (other := self.registry.unfinished_at(path)) is not None:
            raise DuplicateJob(other)
        now = time.time()
        job = Job(
            id=new_job_id(), path=path, name=name, webhook=webhook, skip_preflight=skip_preflight,
            options=options or JobOptions(), state=QUEUED, created_at=now, updated_at=now,
            progress=Progress(bytes_total=size), source=identity,
        )
        self.registry.add(job)  # before the await: a concurrent submit sees the duplicate
        try:
            await self.registry.store.insert(job)
        except BaseException:
            self.registry.remove(job)
            raise
        self._enqueue(job)
        self._flusher.publish(job)
        log.info("job queued %s", kv(job=job.id, path=job.path, bytes=size))
        return job

    def _enqueue(self, job: Job) -> None:
        """A submitted job waits for a job slot here (a fleet worker's waits in the shared
        queue instead: service/fleet/scheduler.py)."""
        self._queue.put_nowait(job)

    async def cancel(self, job_id: str) -> Job:
        job = await self.registry.get(job_id)
        if job.terminal:
            raise JobFinished(job)
        task = self._tasks.get(job.id)
        if task is None:  # queued: the dispatcher skips jobs that are no longer queued
            await self._executor.cancel_queued(job)
            return job
        self._cancel_requested.add(job.id)
        task.cancel()
        await asyncio.wait([task])  # the task aborts the upload and records the cancellation
        return job

    async def _dispatch(self) -> None:
        while True:
            job = await self._queue.get()
            if job.state is not QUEUED:
                continue  # cancelled while it waited
            await self._job_slots.acquire()
            if job.state is not QUEUED or self.closed:
                self._job_slots.release()
                continue
            self._tasks[job.id] = self._tg.create_task(self._run(job), name=f"job-{job.id}")

    async def _run(self, job: Job) -> None:
        def cancelled_by_user() -> bool:
            return job.id in self._cancel_requested and not self.closed

        try:
            await self._executor.run(job, cancelled_by_user=cancelled_by_user)
        finally:
            self._tasks.pop(job.id, None)
            self._cancel_requested.discard(job.id)
            self._job_slots.release()

    def __repr__(self) -> str:
        counts = Counter(str(job.state) for job in self.registry.jobs())
        return (
            f"Scheduler(running={len(self._tasks)}/{self.max_jobs}, queued={self._queue.qsize()}, "
            f"jobs={dict(counts)}, {self.part_slots!r})"
        )
