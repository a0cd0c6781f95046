"""The daemon's job registry holds a bounded number of finished jobs, and loses none of them:
the store still answers for them; the unfinished ones, the only ones notaryd_jobs counts, are
always held."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from service.daemon.job_states import QUEUED, JobOutcome
from service.daemon.job_store import JobStore
from service.daemon.jobs import Job
from service.daemon.metrics import DaemonMetrics
from service.daemon.registry import JobRegistry
from uploader.lifecycle import NotaryStage


async def added(registry: JobRegistry, number: int, end: JobOutcome | None) -> Job:
    job = Job(id=f"{number:012d}", path=Path(f"/archives/{number}.zip"), name=None, webhook=None,
              skip_preflight=False, state=QUEUED, created_at=float(number), updated_at=float(number))
    await registry.store.insert(job)
    registry.add(job)
    if end is not None:
        job.move_to(NotaryStage.UPLOADING)
        job.move_to(end)
        await registry.store.save(job)
    return job


async def test_old_finished_jobs_leave_memory_but_stay_readable(job_store: JobStore) -> None:
    registry = JobRegistry(job_store, max_finished=3)
    running = await added(registry, 0, None)
    for number in range(1, 6):  # five finished jobs: the first two go beyond the limit
        await added(registry, number, JobOutcome.FAILED if number % 2 else JobOutcome.ACCEPTED)
    newest = await added(registry, 6, None)

    held = {job.id for job in registry.jobs()}
    assert held == {running.id, newest.id, *(f"{n:012d}" for n in (3, 4, 5))}
    forgotten = await registry.get(f"{1:012d}")  # from the store now
    assert forgotten.state is JobOutcome.FAILED
    assert len(await registry.recent()) == 7

    metrics = DaemonMetrics(CollectorRegistry(), jobs=registry.jobs)
    count = metrics.registry.get_sample_value
    assert count("notaryd_jobs", {"state": "queued"}) == 2
    assert count("notaryd_jobs", {"state": "failed"}) is None


async def test_the_store_knows_when_a_job_last_ended_accepted(job_store: JobStore) -> None:
    registry = JobRegistry(job_store, max_finished=1)
    assert await job_store.last_finished_at(JobOutcome.ACCEPTED) is None
    ended = [await added(registry, n, JobOutcome.ACCEPTED if n < 3 else JobOutcome.FAILED)
             for n in range(1, 5)]
    accepted = [job.finished_at for job in ended if job.state is JobOutcome.ACCEPTED]
    assert None not in accepted
    assert await job_store.last_finished_at(JobOutcome.ACCEPTED) == max(accepted)  # type: ignore[type-var]
    assert await job_store.last_finished_at(JobOutcome.CANCELLED) is None
