"""One job's run: every way a run can end maps to exactly one JobOutcome, recorded once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from service.daemon.broker import Broker
from service.daemon.execution import (
    Confinement,
    JobExecutor,
    JobRunner,
    failure_for,
    outcome_for,
    request_for,
)
from service.daemon.flusher import Flusher
from service.daemon.job_options import JobOptions
from service.daemon.job_states import QUEUED, JobOutcome
from service.daemon.job_store import JobStore
from service.daemon.jobs import Job
from service.daemon.metrics import DaemonMetrics
from uploader.errors import NotarydError, PermanentUploadError
from uploader.events import Emitter, Hook, NotaryStageChanged
from uploader.lifecycle import NotaryStage
from uploader.notary.ends import StapleNote
from uploader.notary.pipeline import NotarizeOutcome, NotarizeRequest
from uploader.progress import Progress


def make_job(path: Path = Path("/builds/App.zip"), **kwargs: object) -> Job:
    now = time.time()
    fields: dict[str, object] = {
        "id": "job1", "path": path, "name": None, "webhook": None, "skip_preflight": False,
        "state": QUEUED, "created_at": now, "updated_at": now, "progress": Progress(bytes_total=10),
    }
    return Job(**{**fields, **kwargs})  # type: ignore[arg-type]


def outcome(status: str, *, submission_id: str | None = "sub-1", report: str = "",
            staple: StapleNote | None = None) -> NotarizeOutcome:
    return NotarizeOutcome(Path("/builds/App.zip"), submission_id, status, Path("/logs/sub-1.json"),
                           report, staple)


# -- the mapping, row by row ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected", "error"),
    [
        ("Accepted", JobOutcome.ACCEPTED, None),
        ("Invalid", JobOutcome.INVALID, None),
        ("Rejected", JobOutcome.REJECTED, None),
        ("In Progress", JobOutcome.FAILED, "unexpected status 'In Progress'"),
        ("Exploded", JobOutcome.FAILED, "unexpected status 'Exploded'"),
    ],
)
def test_apple_status_maps_to_an_outcome(status: str, expected: JobOutcome, error: str | None) -> None:
    job = make_job()
    assert outcome_for(job, outcome(status)) is expected
    assert job.notary_status == status
    assert job.log_path == Path("/logs/sub-1.json")
    assert (job.error is None) if error is None else (job.error is not None and error in job.error)


def test_the_report_carries_the_staple_line_and_a_missing_id_keeps_the_known_one() -> None:
    job = make_job(submission_id="sub-0")
    outcome_for(job, outcome("Accepted", submission_id=None, report="no issues",
                             staple=StapleNote("App.app: stapled")))
    assert job.submission_id == "sub-0"
    assert job.report == "no issues\nApp.app: stapled"
    bare = make_job()
    outcome_for(bare, outcome("Accepted"))
    assert bare.report is None


@pytest.mark.parametrize(
    ("exc", "error"),
    [
        (PermanentUploadError("part 2: AccessDenied"), "part 2: AccessDenied"),
        (ExceptionGroup("parts", [ValueError("x"), NotarydError("the disk is full")]), "the disk is full"),
        (ExceptionGroup("outer", [ExceptionGroup("inner", [NotarydError("deep")])]), "deep"),
        (RuntimeError("bug"), "internal error (RuntimeError: bug); see the daemon log"),
        (ExceptionGroup("parts", [KeyError("k")]), "internal error (ExceptionGroup"),
    ],
)
def test_an_exception_maps_to_failed_with_one_readable_line(exc: Exception, error: str) -> None:
    job = make_job()
    assert failure_for(job, exc) is JobOutcome.FAILED
    assert job.error is not None and job.error.startswith(error)


def test_the_request_follows_the_job_and_its_options() -> None:
    job = make_job(name="Game.zip", webhook="https://ci.example/hook", skip_preflight=True,
                   options=JobOptions(staple=False, force=True, keep_archive=True))
    assert request_for(job) == NotarizeRequest(
        Path("/builds/App.zip"), name="Game.zip", webhook="https://ci.example/hook",
        skip_preflight=True, wait=True, staple=False, force=True, keep_archive=True)


# -- a whole run through the executor ------------------------------------------------------------


class ScriptedRunner:
    def __init__(self, hooks: Sequence[Hook], run: Callable[[Emitter], Awaitable[NotarizeOutcome]],
                 aborted: list[Path]) -> None:
        self._emit = Emitter(hooks)
        self._run = run
        self._aborted = aborted

    async def run(self, request: NotarizeRequest) -> NotarizeOutcome:
        return await self._run(self._emit)

    async def cancel(self, path: Path, *, keep_archive: bool = False) -> None:
        self._aborted.append(path)


class Setup:
    def __init__(self, run: Callable[[Emitter], Awaitable[NotarizeOutcome]], store: JobStore,
                 confinement: Confinement | None = None) -> None:
        self.store = store
        self.ended: list[Job] = []
        self.aborted: list[Path] = []
        self.runs = 0
        self.metrics = DaemonMetrics(CollectorRegistry())

        def factory(hooks: Sequence[Hook]) -> JobRunner:
            self.runs += 1
            return ScriptedRunner(hooks, run, self.aborted)

        self.executor = JobExecutor(
            factory, Flusher(self.store, Broker()),
            metrics=self.metrics, confinement=confinement or Confinement(), on_job_end=self.ended.append,
        )

    async def added(self, job: Job) -> Job:
        await self.store.insert(job)
        return job

    async def stored(self, job_id: str = "job1") -> Job:
        """The job as the store reads it back from SQLite."""
        stored = await self.store.get(job_id)
        assert stored is not None
        return stored

    def durations(self, outcome: JobOutcome) -> float | None:
        return self.metrics.registry.get_sample_value(
            "notaryd_job_duration_seconds_count", {"outcome": str(outcome)})


async def test_a_verdict_ends_the_job_once_recorded_everywhere(job_store: JobStore) -> None:
    async def run(emit: Emitter) -> NotarizeOutcome:
        emit(NotaryStageChanged("t", NotaryStage.UPLOADING, "sub-1", "In Progress"))
        return outcome("Invalid")

    s = Setup(run, job_store)
    job = await s.added(make_job())
    await s.executor.run(job, cancelled_by_user=lambda: False)
    assert job.state is JobOutcome.INVALID and job.submission_id == "sub-1"
    stored = await s.stored()
    assert (stored.state, stored.submission_id, stored.notary_status, stored.error) == (
        JobOutcome.INVALID, "sub-1", "Invalid", None)
    assert stored.started_at is not None and stored.finished_at == job.finished_at is not None
    assert s.ended == [job]
    assert s.durations(JobOutcome.INVALID) == 1


@pytest.mark.parametrize(
    ("raised", "error"),
    [
        (PermanentUploadError("part 2: AccessDenied"), "part 2: AccessDenied"),
        (ExceptionGroup("g", [NotarydError("inside a group")]), "inside a group"),
        (RuntimeError("bug"), "internal error (RuntimeError: bug)"),
    ],
)
async def test_a_run_that_raises_ends_failed(raised: Exception, error: str, job_store: JobStore) -> None:
    async def run(emit: Emitter) -> NotarizeOutcome:
        raise raised

    s = Setup(run, job_store)
    job = await s.added(make_job())
    await s.executor.run(job, cancelled_by_user=lambda: False)
    assert job.state is JobOutcome.FAILED
    assert job.error is not None and job.error.startswith(error)
    stored = await s.stored()
    assert stored.state is JobOutcome.FAILED and stored.error == job.error and s.ended == [job]


async def test_an_archive_outside_the_roots_fails_before_the_runner_starts(
    tmp_path: Path, job_store: JobStore
) -> None:
    async def run(emit: Emitter) -> NotarizeOutcome:
        raise AssertionError("must not run")

    outside = tmp_path / "elsewhere" / "App.zip"
    outside.parent.mkdir()
    outside.write_bytes(b"x")
    (tmp_path / "roots").mkdir()
    s = Setup(run, job_store, Confinement([tmp_path / "roots"]))
    job = await s.added(make_job(outside))
    await s.executor.run(job, cancelled_by_user=lambda: False)
    assert job.state is JobOutcome.FAILED and job.error is not None and str(outside) in job.error
    assert s.runs == 0
    stored = await s.stored()
    assert stored.state is JobOutcome.FAILED and stored.error == job.error


async def cancelled_while_uploading(job_store: JobStore, *, by_user: bool) -> tuple[Setup, Job, asyncio.Task[None]]:
    """A job whose run is uploading when its task is cancelled (by the user, or a shutdown)."""
    started = asyncio.Event()

    async def run(emit: Emitter) -> NotarizeOutcome:
        emit(NotaryStageChanged("t", NotaryStage.UPLOADING, "sub-1", "In Progress"))
        started.set()
        await asyncio.Future()  # until cancelled
        raise AssertionError

    s = Setup(run, job_store)
    job = await s.added(make_job())
    task = asyncio.create_task(s.executor.run(job, cancelled_by_user=lambda: by_user))
    await started.wait()
    task.cancel()
    return s, job, task


async def test_a_cancel_by_the_user_aborts_the_upload_and_ends_cancelled(job_store: JobStore) -> None:
    s, job, task = await cancelled_while_uploading(job_store, by_user=True)
    await task  # the cancellation is the user's: handled, not propagated
    assert job.state is JobOutcome.CANCELLED
    assert s.aborted == [job.path]
    assert (await s.stored()).state is JobOutcome.CANCELLED and s.ended == [job]


async def test_a_shutdown_leaves_the_job_running_and_saved_for_the_next_start(job_store: JobStore) -> None:
    s, job, task = await cancelled_while_uploading(job_store, by_user=False)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert job.state is NotaryStage.UPLOADING
    stored = await s.stored()
    assert (stored.state, stored.submission_id, stored.finished_at) == (NotaryStage.UPLOADING, "sub-1", None)
    assert [j.id for j in await job_store.unfinished()] == ["job1"]  # what the next start resumes
    assert s.aborted == [] and s.ended == []


async def test_cancelling_a_queued_job_ends_it_and_aborts_only_an_upload_from_before(
    job_store: JobStore,
) -> None:
    async def run(emit: Emitter) -> NotarizeOutcome:
        raise AssertionError("must not run")

    s = Setup(run, job_store)
    fresh = await s.added(make_job())
    await s.executor.cancel_queued(fresh)
    assert fresh.state is JobOutcome.CANCELLED and s.aborted == []
    resumed = await s.added(make_job(Path("/builds/Old.zip"), id="job2", started_at=time.time() - 60))
    await s.executor.cancel_queued(resumed)
    assert resumed.state is JobOutcome.CANCELLED and s.aborted == [Path("/builds/Old.zip")]
    assert s.ended == [fresh, resumed]
    assert [(await s.stored(j)).state for j in ("job1", "job2")] == [JobOutcome.CANCELLED] * 2
    assert await job_store.unfinished() == []
