"""Scheduler with the scripted fake pipeline over a real SQLite database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from service.daemon.broker import Broker
from service.daemon.job_store import JobStore
from service.daemon.metrics import DaemonMetrics
from service.daemon.scheduler import (
    DuplicateJob,
    JobFinished,
    RunRequest,
    Scheduler,
    SchedulerClosed,
)
from service.daemon.slots import PartSlots
from uploader.database import Database
from uploader.lifecycle import JobOutcome, JobState, NotaryStage

from .fakes import FakeRecord, FakeScript, fake_factory


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "state" / "notaryd.sqlite3")
    yield database
    await database.close()


class Harness:
    def __init__(self, db: Database, tmp: Path, script: FakeScript, *, max_jobs: int, parts: int) -> None:
        self.record = FakeRecord()
        self.slots = PartSlots(parts)
        self.broker = Broker()
        self.store = JobStore(db)
        self.tmp = tmp
        self.scheduler = Scheduler(
            self.store,
            fake_factory(self.slots, script, self.record, tmp / "logs"),
            metrics=DaemonMetrics(jobs=lambda: self.scheduler.jobs()),
            broker=self.broker,
            part_slots=self.slots,
            max_jobs=max_jobs,
            flush_interval_seconds=0.05,
        )

    def archive(self, name: str) -> Path:
        path = self.tmp / name
        path.write_bytes(b"x" * 1000)
        return path

    async def submit(self, name: str) -> str:
        job = await self.scheduler.submit(RunRequest(self.archive(name)), size=1000)
        return job.id

    async def wait_state(self, job_id: str, *states: JobState) -> JobState:
        async with asyncio.timeout(10):
            with self.broker.subscribe(job_id) as sub:
                while True:
                    job = await self.scheduler.get(job_id)
                    if job.state in states:
                        return job.state
                    await sub.next_batch(0.5)


@asynccontextmanager
async def running(h: Harness) -> AsyncIterator[Scheduler]:
    async with h.scheduler as scheduler:
        yield scheduler


async def test_a_job_runs_through_every_stage_to_accepted(db: Database, tmp_path: Path) -> None:
    h = Harness(db, tmp_path, FakeScript(parts=4), max_jobs=2, parts=4)
    seen: list[str] = []
    async with running(h):
        with h.broker.subscribe() as sub:
            job_id = await h.submit("App.zip")
            async with asyncio.timeout(10):
                while not seen or seen[-1] != "accepted":
                    seen += [s.state for s in await sub.next_batch(1) if s.id == job_id]
    states = list(dict.fromkeys(seen))  # first appearance order
    assert states == ["queued", "preflight", "hashing", "submitting", "uploading", "waiting", "fetching_log", "accepted"]
    stored = await h.store.get(job_id)
    assert stored is not None
    assert stored.state is JobOutcome.ACCEPTED
    assert stored.progress.bytes_done == stored.progress.bytes_total == 4 * 256 * 1024
    assert stored.submission_id and stored.submission_id.startswith("sub-")
    assert stored.started_at is not None and stored.finished_at is not None


async def test_limits_hold_across_jobs_and_slots_are_shared_fairly(db: Database, tmp_path: Path) -> None:
    script = FakeScript(parts=8, part_seconds=0.04, parts_parallel=4, wait_seconds=0)
    h = Harness(db, tmp_path, script, max_jobs=2, parts=3)
    running_at_once = 0
    async with running(h):
        ids = [await h.submit(f"a{i}.zip") for i in range(4)]
        async with asyncio.timeout(20):
            while not all([(await h.scheduler.get(i)).terminal for i in ids]):
                running_at_once = max(running_at_once, sum(1 for j in h.scheduler.jobs() if j.running))
                await asyncio.sleep(0.005)
    assert {(await h.scheduler.get(i)).state for i in ids} == {JobOutcome.ACCEPTED}
    assert running_at_once == 2
    assert h.record.max_in_flight == 3  # 2 jobs x 4 workers want 8 slots; 3 exist
    # While a0 and a1 run together, neither gets all the slots: look at their first 8 parts.
    first = [name for name in h.record.part_order if name in {"a0.zip", "a1.zip"}][:8]
    assert first.count("a0.zip") >= 3 and first.count("a1.zip") >= 3, first


async def test_outcomes_map_to_terminal_states(db: Database, tmp_path: Path) -> None:
    h = Harness(db, tmp_path, FakeScript(wait_seconds=0), max_jobs=3, parts=4)
    async with running(h):
        invalid = await h.submit("invalid.zip")
        rejected = await h.submit("rejected.zip")
        boom = await h.submit("boom.zip")
        for job_id in (invalid, rejected, boom):
            await h.wait_state(job_id, *JobOutcome)
    assert (await h.scheduler.get(invalid)).state is JobOutcome.INVALID
    assert (await h.scheduler.get(rejected)).state is JobOutcome.REJECTED
    failed = await h.store.get(boom)
    assert failed is not None and failed.state is JobOutcome.FAILED
    assert failed.error is not None and "AccessDenied" in failed.error


async def test_cancel_aborts_a_running_upload_and_drops_a_queued_job(db: Database, tmp_path: Path) -> None:
    h = Harness(db, tmp_path, FakeScript(parts=50, part_seconds=0.2), max_jobs=1, parts=2)
    async with running(h):
        first = await h.submit("first.zip")
        second = await h.submit("second.zip")
        await h.wait_state(first, NotaryStage.UPLOADING)
        cancelled = await h.scheduler.cancel(first)
        assert cancelled.state is JobOutcome.CANCELLED
        assert h.record.aborted == [tmp_path / "first.zip"]
        await h.wait_state(second, NotaryStage.UPLOADING)
        await h.scheduler.cancel(second)
        with pytest.raises(JobFinished):
            await h.scheduler.cancel(first)
        third = await h.submit("third.zip")  # queued behind nothing: may start at once
        await h.scheduler.cancel(third)
    for job_id in (first, second, third):
        stored = await h.store.get(job_id)
        assert stored is not None and stored.state is JobOutcome.CANCELLED
    assert h.record.in_flight == 0


async def test_the_same_archive_cannot_be_queued_twice(db: Database, tmp_path: Path) -> None:
    h = Harness(db, tmp_path, FakeScript(parts=20, part_seconds=0.2), max_jobs=1, parts=2)
    async with running(h):
        await h.submit("App.zip")
        with pytest.raises(DuplicateJob, match="already being notarised"):
            await h.submit("App.zip")


async def test_drain_lets_parts_in_flight_finish_then_the_job_resumes(db: Database, tmp_path: Path) -> None:
    script = FakeScript(parts=6, part_seconds=0.6, parts_parallel=2, chunks_per_part=6)
    h = Harness(db, tmp_path, script, max_jobs=1, parts=2)
    async with running(h) as scheduler:
        job_id = await h.submit("App.zip")
        await h.wait_state(job_id, NotaryStage.UPLOADING)
        await asyncio.sleep(0.2)  # two parts are mid-flight
        assert h.record.in_flight == 2
        parts_started = len(h.record.part_order)
        started = time.monotonic()
        await scheduler.drain(5.0)
        took = time.monotonic() - started
        with pytest.raises(SchedulerClosed):
            await h.submit("other.zip")
    assert 0.2 < took < 2.0  # waited for the parts (~0.4 s left), not the whole grace period
    assert len(h.record.part_order) == parts_started  # no new part started after the drain
    stored = await h.store.get(job_id)
    assert stored is not None and stored.state is NotaryStage.UPLOADING  # resumable, not failed
    assert stored.progress.bytes_done == 2 * script.part_bytes  # the parts in flight were acknowledged

    h2 = Harness(db, tmp_path, FakeScript(parts=2, wait_seconds=0), max_jobs=1, parts=2)
    async with running(h2):
        resumed = await h2.scheduler.resume()
        assert [j.id for j in resumed] == [job_id]
        assert await h2.wait_state(job_id, JobOutcome.ACCEPTED) is JobOutcome.ACCEPTED


async def test_drain_gives_up_on_slow_parts_after_the_grace_period(db: Database, tmp_path: Path) -> None:
    h = Harness(db, tmp_path, FakeScript(parts=2, part_seconds=30), max_jobs=1, parts=2)
    async with running(h) as scheduler:
        job_id = await h.submit("App.zip")
        await h.wait_state(job_id, NotaryStage.UPLOADING)
        started = time.monotonic()
        await scheduler.drain(0.3)
        assert time.monotonic() - started < 1.0
    stored = await h.store.get(job_id)
    assert stored is not None and stored.state is NotaryStage.UPLOADING


async def test_cancelling_a_resumed_job_before_it_runs_aborts_its_old_upload(db: Database, tmp_path: Path) -> None:
    h = Harness(db, tmp_path, FakeScript(parts=50, part_seconds=0.5), max_jobs=1, parts=2)
    async with running(h) as scheduler:
        job_id = await h.submit("App.zip")
        await h.wait_state(job_id, NotaryStage.UPLOADING)
        await scheduler.drain(0.1)  # daemon stops mid-upload
    h2 = Harness(db, tmp_path, FakeScript(parts=2), max_jobs=1, parts=2)
    async with running(h2) as scheduler:
        await scheduler.resume()
        cancelled = await scheduler.cancel(job_id)  # before the dispatcher gets to it
        await asyncio.sleep(0.2)
    assert cancelled.state is JobOutcome.CANCELLED
    assert h2.record.aborted == [tmp_path / "App.zip"]
    assert h2.record.started == [], "a cancelled job must not start"
    stored = await h2.store.get(job_id)
    assert stored is not None and stored.state is JobOutcome.CANCELLED
