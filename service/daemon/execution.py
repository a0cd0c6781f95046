"""Running one job: from its start to the one outcome it ends in, recorded.

``JobExecutor.run(job)`` is the whole life of a job's task:

1. move the job to its first running stage and check the archive again (a local user may have
   swapped it for a symlink, a FIFO or another file while the job waited in the queue);
2. run the job's ``JobRunner`` (the notary pipeline) with the job's request, every open of the
   archive confined to the allowed roots, the runner's events folded into ``job.progress``;
3. map what came back to a ``JobOutcome`` (``outcome_for`` and ``failure_for``: Apple's status, or
   the exception as one readable line) and record the end: in memory first (subscribers, metrics,
   the job-end notification see it at once), then in SQLite, shielded from cancellation.

A cancellation is either the user's (``cancel``: abort the multipart upload, remove the zip made
from a bundle, end ``cancelled``)
or the daemon's shutdown (leave the job in its running state, saved, for the next start to
resume).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiohttp

from uploader.artifact import Artifact
from uploader.database import Database
from uploader.errors import NotarydError, SourceChangedError
from uploader.events import Event, Hook, NotaryStageChanged
from uploader.lifecycle import NotaryStage
from uploader.notary.pipeline import NotarizeOutcome, NotarizeRequest, PreflightFailed
from uploader.source_file import SourceRejected, confine_to
from uploader.throttle import Throttle

from .flusher import Flusher
from .job_states import JobOutcome, JobState
from .jobs import Job
from .logfmt import kv
from .metrics import DaemonMetrics
from .slots import PartSlots

log = logging.getLogger(__name__)

ABORT_TIMEOUT_SECONDS = 60.0


class JobRunner(Protocol):
    """One job's pipeline. ``run`` is resumable: running it again continues where it stopped."""

    async def run(self, request: NotarizeRequest) -> NotarizeOutcome: ...

    async def cancel(self, path: Path, *, keep_archive: bool = False) -> None:
        """Abort the multipart upload of ``path``, if any (a no-op when there is none), and
        remove the zip made from it unless ``keep_archive``."""
        ...


RunnerFactory = Callable[[Sequence[Hook]], JobRunner]


@dataclass(frozen=True)
class Shared:
    """What every job's runner shares: the database, the daemon-wide limits, one HTTP session."""

    db: Database
    part_slots: PartSlots
    throttle: Throttle | None
    session: aiohttp.ClientSession


@dataclass(frozen=True)
class Confinement:
    """Where a job's files may be: the allowed roots, plus notaryd's own dirs (zips of bundles).

    ``roots=None`` leaves the runner's files unconfined (tests of the scheduling alone).
    """

    roots: Sequence[Path] | None = None
    own_dirs: Sequence[Path] = ()

    async def recheck(self, job: Job) -> Artifact | None:
        """The archive is still a regular file (a bundle a real folder) in the allowed roots,
        and the one submitted: the job's input, opened (None when unconfined)."""
        if self.roots is None:
            return None
        try:
            return await asyncio.to_thread(Artifact.open, job.path, self.roots,
                                           expected=job.source)
        except SourceChangedError as exc:
            raise SourceRejected(
                job.path, f"changed since it was submitted ({exc.what}); submit it again once it is final"
            ) from None

    def confined(self) -> contextlib.AbstractContextManager[None]:
        """Every open of the archive inside the run checks the allowed roots on the descriptor."""
        if self.roots is None:
            return contextlib.nullcontext()
        return confine_to([*self.roots, *self.own_dirs])


def request_for(job: Job, artifact: Artifact | None = None) -> NotarizeRequest:
    """What the pipeline is asked to do for ``job`` (a daemon job always waits for the verdict)."""
    return NotarizeRequest(
        job.path,
        artifact=artifact,
        name=job.name,
        webhook=job.webhook,
        skip_preflight=job.skip_preflight,
        wait=True,
        staple=job.options.staple,
        force=job.options.force,
        keep_archive=job.options.keep_archive,
    )


def outcome_for(job: Job, outcome: NotarizeOutcome) -> JobOutcome:
    """Record the run's results on ``job``; its outcome follows Apple's final status."""
    job.submission_id = outcome.submission_id or job.submission_id
    job.notary_status = outcome.status
    job.log_path = outcome.log_path
    staple_line = outcome.staple.text if outcome.staple else ""
    job.report = "\n".join(line for line in (outcome.report, staple_line) if line) or None
    final = JobOutcome.from_status(outcome.status)
    if final is None:
        job.error = f"the notary service ended with an unexpected status {outcome.status!r}"
        return JobOutcome.FAILED
    return final


def failure_for(job: Job, exc: Exception) -> JobOutcome:
    """Record why the run raised: a NotarydError's own line, anything else as an internal error."""
    known = _first_notaryd_error(exc)  # also inside an exception group of the pipeline's tasks
    if isinstance(known, PreflightFailed):  # what Apple would call Invalid, found before upload
        job.error, job.report = str(known), known.report
        return JobOutcome.INVALID
    if known is not None:
        job.error = str(known)
    else:
        log.error("job crashed %s", kv(job=job.id), exc_info=exc)
        job.error = f"internal error ({type(exc).__name__}: {exc}); see the daemon log"
    return JobOutcome.FAILED


class JobExecutor:
    def __init__(
        self,
        runner_factory: RunnerFactory,
        flusher: Flusher,
        *,
        metrics: DaemonMetrics,
        confinement: Confinement = Confinement(),
        on_job_end: Callable[[Job], None] | None = None,
    ) -> None:
        self._factory = runner_factory
        self.flusher = flusher
        self._metrics = metrics
        self._confinement = confinement
        self._on_job_end = on_job_end  # job-end notifications (service.daemon.notify)

    async def run(self, job: Job, *, cancelled_by_user: Callable[[], bool]) -> None:
        """Run ``job`` to its end; on a cancellation ``cancelled_by_user()`` says whose it was."""
        try:
            await self._run(job, cancelled_by_user)
        except Exception:
            # Only bookkeeping can fail here (e.g. the database); one job must not take the
            # scheduler's TaskGroup, and with it every other job, down.
            log.exception("recording the job's end failed %s", kv(job=job.id))

    async def cancel_queued(self, job: Job) -> None:
        """End a job that is not running; abort the upload it may own from before a restart."""
        self.end(job, JobOutcome.CANCELLED)
        if job.started_at is not None:
            await self._abort_upload(job, self._factory([self._metrics]))
        await self.flusher.store.save(job)

    async def _run(self, job: Job, cancelled_by_user: Callable[[], bool]) -> None:
        try:
            self._set_state(job, NotaryStage.HASHING if job.skip_preflight else NotaryStage.PREFLIGHT)
            log.info("job started %s", kv(job=job.id, path=job.path))
            artifact = await self._confinement.recheck(job)
            runner = self._factory([self._metrics, self._progress_hook(job)])
            try:
                with self._confinement.confined():
                    outcome = await runner.run(request_for(job, artifact))
            except asyncio.CancelledError:
                if not cancelled_by_user():
                    # Shutdown: leave the job resumable where it is.
                    await asyncio.shield(self.flusher.store.save(job))
                    log.info("job interrupted %s", kv(job=job.id, state=job.state))
                    raise
                current = asyncio.current_task()
                if current is not None:
                    current.uncancel()
                await asyncio.shield(self._abort_upload(job, runner))
                await asyncio.shield(self._finish(job, JobOutcome.CANCELLED))
                return
            final = outcome_for(job, outcome)
        except Exception as exc:
            final = failure_for(job, exc)
        await self._finish(job, final)

    async def _abort_upload(self, job: Job, runner: JobRunner) -> None:
        try:
            async with asyncio.timeout(ABORT_TIMEOUT_SECONDS):
                await runner.cancel(job.path, keep_archive=job.options.keep_archive)
        except Exception as exc:  # the job is cancelled either way; say so, keep going
            log.warning("aborting the upload failed %s", kv(job=job.id, error=exc))
            job.error = f"cancelled; aborting its multipart upload failed: {exc}"
        else:
            log.info("upload aborted %s", kv(job=job.id))

    async def _finish(self, job: Job, state: JobOutcome) -> None:
        if job.terminal:
            return  # a cancel got there first; its state stands
        self.end(job, state)
        # shielded: a shutdown cancelling the task now must not leave the old state on disk
        # (subscribers already saw the terminal one; the job would run again at the next start)
        await asyncio.shield(self.flusher.store.save(job))

    def end(self, job: Job, state: JobOutcome) -> None:
        """Move to a terminal state, in memory: metrics, subscribers and the log see it now."""
        job.move_to(state)
        started, finished = job.started_at, job.finished_at
        self._metrics.job_finished(
            state, finished - started if started is not None and finished is not None else None,
            finished)
        self.flusher.forget(job)
        self.flusher.publish(job)
        if self._on_job_end is not None:
            self._on_job_end(job)
        log.info(
            "job finished %s",
            kv(job=job.id, state=state, submission=job.submission_id, error=job.error),
        )

    def _set_state(self, job: Job, state: JobState) -> None:
        if job.move_to(state):
            log.info("job state %s", kv(job=job.id, state=state))
            self.flusher.publish(job)
            self.flusher.mark(job, at_once=True)

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
            self.flusher.mark(job)

        return hook


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
