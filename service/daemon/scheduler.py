"""The job scheduler: a FIFO queue of jobs run under global limits, each task owned.

Theory of operation
-------------------
* ``Scheduler`` is an async context manager that owns one ``asyncio.TaskGroup``. Inside it run a
  dispatcher (takes queued jobs in order and starts at most ``max_jobs`` at once), a flusher
  (persists progress and publishes snapshots twice a second) and one task per running job.
* Each job gets its own ``JobRunner`` from ``runner_factory(hooks)``; the hooks tie the
  pipeline's events to that job (state, bytes, rate) and to the metrics. The runners share the
  daemon-wide ``PartSlots`` (parts in flight across all jobs) and bandwidth throttle, which the
  factory closes over; that sharing is what keeps jobs fair to each other.
* A job's terminal state comes from the run's outcome (Apple's status) or its exception.
* ``cancel`` cancels the job's task, then asks a runner to abort the multipart upload.
* ``drain(grace)``: refuse new jobs, close the part slots (no new parts start), wait up to
  ``grace`` seconds for parts in flight, then cancel the job tasks. Interrupted jobs keep their
  running state in SQLite and ``resume()`` puts them back in the queue on the next start; the
  pipeline then continues the same submission and upload from its own saved state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol

from uploader.bundle_zip import is_bundle
from uploader.errors import NotarydError, SourceChangedError
from uploader.events import Event, Hook, NotaryStageChanged
from uploader.hashing import FileIdentity
from uploader.lifecycle import QUEUED, JobOutcome, JobState, NotaryStage
from uploader.progress import Progress
from uploader.source_file import SourceRejected, check_bundle_folder, check_source, confine_to

from .broker import Broker
from .job_options import JobOptions
from .job_store import JobStore
from .jobs import Job, JobNotFound, new_job_id
from .logfmt import kv
from .metrics import DaemonMetrics
from .slots import PartSlots

log = logging.getLogger(__name__)

ABORT_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class RunRequest:
    path: Path
    name: str | None = None
    webhook: str | None = None
    skip_preflight: bool = False
    options: JobOptions = field(default_factory=JobOptions)


@dataclass(frozen=True)
class RunOutcome:
    submission_id: str | None
    status: str | None  # Apple's final status: "Accepted" | "Invalid" | "Rejected"
    log_path: Path | None = None
    report: str | None = None


class JobRunner(Protocol):
    """One job's pipeline. ``run`` is resumable: running it again continues where it stopped."""

    async def run(self, request: RunRequest) -> RunOutcome: ...

    async def cancel(self, path: Path) -> None:
        """Abort the multipart upload of ``path``, if any; a no-op when there is none."""
        ...


RunnerFactory = Callable[[Sequence[Hook]], JobRunner]


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
        self,
        store: JobStore,
        runner_factory: RunnerFactory,
        *,
        metrics: DaemonMetrics,
        broker: Broker,
        part_slots: PartSlots,
        max_jobs: int,
        allowed_roots: Sequence[Path] | None = None,
        own_dirs: Sequence[Path] = (),
        flush_interval_seconds: float = 0.5,
        on_job_end: Callable[[Job], None] | None = None,
    ) -> None:
        if max_jobs < 1:
            raise ValueError(f"max_jobs must be at least 1, got {max_jobs}")
        self._store = store
        self._factory = runner_factory
        self._metrics = metrics
        self._broker = broker
        self.part_slots = part_slots
        self.max_jobs = max_jobs
        self._allowed_roots = allowed_roots  # None: the runner's files are not confined (tests)
        self._own_dirs = tuple(own_dirs)  # notaryd's own files (zips of bundles), readable too
        self._flush_interval = flush_interval_seconds
        self._on_job_end = on_job_end  # job-end notifications (service.daemon.notify)
        self._jobs: dict[str, Job] = {}  # every job this process has seen
        self._queue: asyncio.Queue[Job] = asyncio.Queue()
        self._job_slots = asyncio.Semaphore(max_jobs)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._cancel_requested: set[str] = set()
        self._dirty: set[str] = set()
        self._dirty_event = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._service_tasks: list[asyncio.Task[None]] = []
        self.closed = False

    # -- lifetime ----------------------------------------------------------------------------

    async def __aenter__(self) -> Scheduler:
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        self._service_tasks = [
            self._tg.create_task(self._dispatch(), name="scheduler-dispatch"),
            self._tg.create_task(self._flush_forever(), name="scheduler-flush"),
        ]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tg is not None
        self.closed = True
        for task in (*self._tasks.values(), *self._service_tasks):
            task.cancel()
        try:
            await self._tg.__aexit__(exc_type, exc, tb)
        finally:
            await asyncio.shield(self._flush())

    async def resume(self) -> list[Job]:
        """Queue again every job an earlier daemon left unfinished, oldest first."""
        jobs = await self._store.unfinished()
        for job in jobs:
            log.info("resuming job %s", kv(job=job.id, path=job.path, was=job.state))
            job.move_to(QUEUED)
            self._jobs[job.id] = job
            await self._store.save(job)
            self._queue.put_nowait(job)
        return jobs

    async def drain(
        self, grace_seconds: float, *, hurry: asyncio.Future[None] | None = None
    ) -> None:
        """Stop intake, let parts in flight finish for up to ``grace_seconds``, stop the jobs.

        ``hurry`` (e.g. a second SIGTERM) ends the wait for parts in flight early.
        """
        self.closed = True
        self.part_slots.close()
        running = len(self._tasks)
        started = time.monotonic()
        idle = asyncio.ensure_future(self.part_slots.wait_idle())
        try:
            waiters: list[asyncio.Future[None]] = [idle] if hurry is None else [idle, hurry]
            await asyncio.wait(waiters, timeout=grace_seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            idle.cancel()
        if self.part_slots.in_use:
            log.warning(
                "abandoning parts in flight %s",
                kv(parts=self.part_slots.in_use, grace_seconds=grace_seconds),
            )
        log.info(
            "stopping jobs %s",
            kv(jobs=running, waited_seconds=round(time.monotonic() - started, 2)),
        )
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    # -- queries -----------------------------------------------------------------------------

    def jobs(self) -> list[Job]:
        return list(self._jobs.values())

    async def get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id) or await self._store.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    async def recent(self, limit: int = 200) -> list[Job]:
        """Newest first: the live jobs merged over the stored history."""
        stored = await self._store.recent(limit)
        merged = {job.id: self._jobs.get(job.id, job) for job in stored}
        for job in self._jobs.values():
            merged.setdefault(job.id, job)
        return sorted(merged.values(), key=lambda j: (j.created_at, j.id), reverse=True)[:limit]

    async def log_path(self, job: Job) -> Path | None:
        if job.log_path is not None:
            return job.log_path
        if job.submission_id is None:
            return None
        return await self._store.log_path(job.submission_id)

    # -- commands ----------------------------------------------------------------------------

    async def submit(
        self, request: RunRequest, *, size: int, identity: FileIdentity | None = None
    ) -> Job:
        if self.closed:
            raise SchedulerClosed()
        for other in self._jobs.values():
            if other.path == request.path and not other.terminal:
                raise DuplicateJob(other)
        now = time.time()
        job = Job(
            id=new_job_id(),
            path=request.path,
            name=request.name,
            webhook=request.webhook,
            skip_preflight=request.skip_preflight,
            options=request.options,
            state=QUEUED,
            created_at=now,
            updated_at=now,
            progress=Progress(bytes_total=size),
            source=identity,
        )
        self._jobs[job.id] = job  # before the await: a concurrent submit sees the duplicate
        try:
            await self._store.insert(job)
        except BaseException:
            del self._jobs[job.id]
            raise
        self._queue.put_nowait(job)
        self._publish(job)
        log.info("job queued %s", kv(job=job.id, path=job.path, bytes=size))
        return job

    async def cancel(self, job_id: str) -> Job:
        job = await self.get(job_id)
        if job.terminal:
            raise JobFinished(job)
        task = self._tasks.get(job.id)
        if task is not None:
            self._cancel_requested.add(job.id)
            task.cancel()
            # the task aborts the upload and records the cancellation itself
            await asyncio.wait([task])
            return job
        # Queued: end it now (the dispatcher skips jobs that are no longer queued), then abort
        # the upload it may own from before a restart.
        self._end(job, JobOutcome.CANCELLED)
        if job.started_at is not None:
            await self._abort_upload(job, self._factory([self._metrics.job_hook(job.id)]))
        await self._store.save(job)
        return job

    # -- internals ---------------------------------------------------------------------------

    async def _dispatch(self) -> None:
        assert self._tg is not None
        while True:
            job = await self._queue.get()
            if job.state is not QUEUED:
                continue  # cancelled while it waited
            await self._job_slots.acquire()
            if job.state is not QUEUED or self.closed:
                self._job_slots.release()
                continue
            self._tasks[job.id] = self._tg.create_task(self._run_job(job), name=f"job-{job.id}")

    async def _run_job(self, job: Job) -> None:
        try:
            await self._run_and_record(job)
        except Exception:
            # Only bookkeeping can fail here (e.g. the database); one job must not take the
            # scheduler's TaskGroup, and with it every other job, down.
            log.exception("recording the job's end failed %s", kv(job=job.id))
        finally:
            self._tasks.pop(job.id, None)
            self._cancel_requested.discard(job.id)
            self._metrics.forget(job.id)
            self._job_slots.release()

    async def _run_and_record(self, job: Job) -> None:
        hooks: list[Hook] = [self._metrics.job_hook(job.id), self._progress_hook(job)]
        request = RunRequest(job.path, job.name, job.webhook, job.skip_preflight, job.options)
        try:
            first = NotaryStage.HASHING if job.skip_preflight else NotaryStage.PREFLIGHT
            self._set_state(job, first)
            log.info("job started %s", kv(job=job.id, path=job.path))
            await self._recheck_source(job)
            runner = self._factory(hooks)
            try:
                with self._confined():
                    outcome = await runner.run(request)
            except asyncio.CancelledError:
                if job.id not in self._cancel_requested or self.closed:
                    # Shutdown: leave the job resumable where it is.
                    await asyncio.shield(self._store.save(job))
                    log.info("job interrupted %s", kv(job=job.id, state=job.state))
                    raise
                current = asyncio.current_task()
                if current is not None:
                    current.uncancel()
                await asyncio.shield(self._abort_upload(job, runner))
                await asyncio.shield(self._finish(job, JobOutcome.CANCELLED))
                return
            job.submission_id = outcome.submission_id or job.submission_id
            job.notary_status = outcome.status
            job.log_path = outcome.log_path
            job.report = outcome.report
            final = JobOutcome.from_status(outcome.status)
            if final is None:
                job.error = f"the notary service ended with an unexpected status {outcome.status!r}"
                final = JobOutcome.FAILED
            await self._finish(job, final)
        except NotarydError as exc:
            job.error = str(exc)
            await self._finish(job, JobOutcome.FAILED)
        except Exception as exc:
            known = _first_notaryd_error(exc)
            if known is not None:  # e.g. raised inside a TaskGroup of the pipeline
                job.error = str(known)
            else:
                log.exception("job crashed %s", kv(job=job.id))
                job.error = f"internal error ({type(exc).__name__}: {exc}); see the daemon log"
            await self._finish(job, JobOutcome.FAILED)

    async def _recheck_source(self, job: Job) -> None:
        """The archive is still a regular file in the allowed roots, and the one submitted.

        Runs at every start, resumed jobs included: the path was checked at POST, but a local
        user may have swapped it (for a symlink, a FIFO, another file) while the job waited.
        """
        if self._allowed_roots is None:
            return
        if await asyncio.to_thread(is_bundle, job.path):  # zipped by the pipeline, never followed
            await asyncio.to_thread(check_bundle_folder, job.path, self._allowed_roots)
            return
        try:
            await asyncio.to_thread(check_source, job.path, self._allowed_roots, job.source)
        except SourceChangedError as exc:
            raise SourceRejected(
                job.path, f"changed since it was submitted ({exc.what}); submit it again once it is final"
            ) from None

    def _confined(self) -> contextlib.AbstractContextManager[None]:
        """Every open of the archive inside the run checks the allowed roots on the descriptor."""
        if self._allowed_roots is None:
            return contextlib.nullcontext()
        return confine_to([*self._allowed_roots, *self._own_dirs])

    async def _abort_upload(self, job: Job, runner: JobRunner) -> None:
        try:
            async with asyncio.timeout(ABORT_TIMEOUT_SECONDS):
                await runner.cancel(job.path)
        except Exception as exc:  # the job is cancelled either way; say so, keep going
            log.warning("aborting the upload failed %s", kv(job=job.id, error=exc))
            job.error = f"cancelled; aborting its multipart upload failed: {exc}"
        else:
            log.info("upload aborted %s", kv(job=job.id))

    async def _finish(self, job: Job, state: JobOutcome) -> None:
        if job.terminal:
            return  # a cancel got there first; its state stands
        self._end(job, state)
        # shielded: a shutdown cancelling the task now must not leave the old state on disk
        # (subscribers already saw the terminal one; the job would run again at the next start)
        await asyncio.shield(self._store.save(job))

    def _end(self, job: Job, state: JobOutcome) -> None:
        """Move to a terminal state, in memory: metrics, subscribers and the log see it now."""
        job.move_to(state)
        if job.started_at is not None and job.finished_at is not None:
            self._metrics.job_finished(state, job.finished_at - job.started_at)
        self._publish(job)
        self._dirty.discard(job.id)
        if self._on_job_end is not None:
            self._on_job_end(job)
        log.info(
            "job finished %s",
            kv(job=job.id, state=state, submission=job.submission_id, error=job.error),
        )

    def _set_state(self, job: Job, state: JobState) -> None:
        if job.move_to(state):
            log.info("job state %s", kv(job=job.id, state=state))
            self._publish(job)
            self._mark_dirty(job)

    def _progress_hook(self, job: Job) -> Hook:
        def hook(event: Event, /) -> None:
            if job.terminal:
                return
            job.progress.apply(event)
            if isinstance(event, NotaryStageChanged):
                job.submission_id = event.submission_id or job.submission_id
                job.notary_status = event.notary_status or job.notary_status
                if event.stage.running:
                    self._set_state(job, event.stage)
                elif event.stage is NotaryStage.FAILED and event.detail:
                    job.error = event.detail
            job.updated_at = time.time()
            self._mark_dirty(job)

        return hook

    def _mark_dirty(self, job: Job) -> None:
        self._dirty.add(job.id)
        self._dirty_event.set()

    def _publish(self, job: Job) -> None:
        self._broker.publish(job.snapshot())

    async def _flush_forever(self) -> None:
        while True:
            await self._dirty_event.wait()
            await self._flush()
            # batch progress: at most one write and one SSE update per job per interval
            await asyncio.sleep(self._flush_interval)

    async def _flush(self) -> None:
        self._dirty_event.clear()
        dirty, self._dirty = self._dirty, set()
        for job_id in dirty:
            job = self._jobs.get(job_id)
            if job is None:
                continue
            self._publish(job)
            try:
                await self._store.save(job)
            except Exception as exc:  # progress only: try again on the next flush
                log.warning("saving job progress failed %s", kv(job=job_id, error=exc))
                self._dirty.add(job_id)

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for job in self._jobs.values():
            counts[str(job.state)] = counts.get(str(job.state), 0) + 1
        return (
            f"Scheduler(running={len(self._tasks)}/{self.max_jobs}, queued={self._queue.qsize()}, "
            f"jobs={counts}, {self.part_slots!r})"
        )


def _first_notaryd_error(exc: BaseException) -> NotarydError | None:
    """The first NotarydError inside an exception group (depth first), if any."""
    if isinstance(exc, NotarydError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _first_notaryd_error(inner)
            if found is not None:
                return found
    return None
