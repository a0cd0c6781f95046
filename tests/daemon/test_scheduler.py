"""Scheduler with the scripted fake pipeline over a real SQLite database.

Parts that must stay in flight wait on the script's ``gate``; the tests wait for what the fakes
record (``FakeRecord.until``) or for published snapshots, never for time to pass.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from service.daemon import migrations as daemon_migrations
from service.daemon.broker import Broker
from service.daemon.job_states import JobOutcome, JobState
from service.daemon.job_store import JobStore
from service.daemon.jobs import Job
from service.daemon.scheduler import DuplicateJob, JobFinished, SchedulerClosed
from service.daemon.slots import PartSlots
from uploader.database import Database
from uploader.lifecycle import NotaryStage

from .fakes import FakeRecord, FakeScript, fake_factory, fake_scheduler


@pytest.fixture
async def db(db: Database) -> Database:
    """The shared state database with the daemon's tables too (what `notaryd serve` opens)."""
    await db.require(daemon_migrations.SCHEMA)
    return db


class Harness:
    def __init__(self, db: Database, tmp: Path, script: FakeScript, *, max_jobs: int, parts: int) -> None:
        self.record = FakeRecord()
        self.script = script
        self.slots = PartSlots(parts)
        self.broker = Broker()
        self.store = JobStore(db)  # the fixture brought the daemon's tables up to date
        self.tmp = tmp
        self.ended: list[Job] = []
        self.scheduler = fake_scheduler(
            self.store, fake_factory(self.slots, script, self.record, tmp / "logs"), self.broker,
            self.slots, max_jobs=max_jobs, on_job_end=self.ended.append,
        )

    def archive(self, name: str) -> Path:
        path = self.tmp / name
        path.write_bytes(b"x" * 1000)
        return path

    async def submit(self, name: str) -> str:
        job = await self.scheduler.submit(self.archive(name), size=1000)
        return job.id

    async def wait_state(self, job_id: str, *states: JobState) -> JobState:
        async with asyncio.timeout(10):
            with self.broker.subscribe(job_id) as sub:
                while True:
                    job = await self.scheduler.get(job_id)
                    if job.state in states:
                        return job.state
                    await sub.next_batch(0.5)


async def started(drain: asyncio.Task[None], slots: PartSlots) -> None:
    """Let a drain task just created run up to its wait for the parts in flight."""
    await asyncio.sleep(0)  # one turn of the loop: the task's first step closes the slots
    assert slots.closed and not drain.done()


def gated(**kwargs: int) -> FakeScript:
    return FakeScript(part_seconds=0, wait_seconds=0, gate=asyncio.Event(), **kwargs)


async def test_a_job_runs_through_every_stage_to_accepted(db: Database, tmp_path: Path) -> None:
    h = Harness(db, tmp_path, FakeScript(parts=4), max_jobs=2, parts=4)
    seen: list[str] = []
    async with h.scheduler:
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
    assert [job.id for job in h.ended] == [job_id]  # the job-end notification, once


async def test_limits_hold_across_jobs_and_slots_are_shared_fairly(db: Database, tmp_path: Path) -> None:
    script = FakeScript(parts=8, part_seconds=0.04, parts_parallel=4, wait_seconds=0)
    h = Harness(db, tmp_path, script, max_jobs=2, parts=3)
    async with h.scheduler:
        ids = [await h.submit(f"a{i}.zip") for i in range(4)]
        for job_id in ids:
            await h.wait_state(job_id, *JobOutcome)
    assert {(await h.scheduler.get(i)).state for i in ids} == {JobOutcome.ACCEPTED}
    assert h.record.max_running == 2
    assert h.record.max_in_flight == 3  # 2 jobs x 4 workers want 8 slots; 3 exist
    # While a0 and a1 run together, neither gets all the slots: look at their first 8 parts.
    first = [name for name in h.record.part_order if name in {"a0.zip", "a1.zip"}][:8]
    assert first.count("a0.zip") >= 3 and first.count("a1.zip") >= 3, first


async def test_outcomes_map_to_terminal_states(db: Database, tmp_path: Path) -> None:
    h = Harness(db, tmp_path, FakeScript(wait_seconds=0), max_jobs=3, parts=4)
    async with h.scheduler:
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
    assert sorted(job.id for job in h.ended) == sorted([invalid, rejected, boom])


async def test_cancel_aborts_a_running_upload_and_drops_a_queued_job(db: Database, tmp_path: Path) -> None:
    h = Harness(db, tmp_path, gated(parts=50), max_jobs=1, parts=2)
    async with h.scheduler:
        first = await h.submit("first.zip")
        second = await h.submit("second.zip")
        await h.record.until(lambda: h.record.in_flight == 2)
        queued = await h.scheduler.cancel(second)  # still queued behind first: never starts
        assert queued.state is JobOutcome.CANCELLED
        cancelled = await h.scheduler.cancel(first)
        assert cancelled.state is JobOutcome.CANCELLED
        assert h.record.aborted == [tmp_path / "first.zip"]
        with pytest.raises(JobFinished):
            await h.scheduler.cancel(first)
        third = await h.submit("third.zip")
        await h.record.until(lambda: h.record.in_flight == 2)
        await h.scheduler.cancel(third)
    for job_id in (first, second, third):
        stored = await h.store.get(job_id)
        assert stored is not None and stored.state is JobOutcome.CANCELLED
    assert h.record.started == [tmp_path / "first.zip", tmp_path / "third.zip"]
    assert h.record.in_flight == 0
    assert sorted(job.id for job in h.ended) == sorted([first, second, third])


async def test_the_same_archive_cannot_be_queued_twice(db: Database, tmp_path: Path) -> None:
    h = Harness(db, tmp_path, gated(parts=20), max_jobs=1, parts=2)
    async with h.scheduler:
        first = await h.submit("App.zip")
        with pytest.raises(DuplicateJob, match="already being notarised"):
            await h.submit("App.zip")
        await h.scheduler.cancel(first)
        await h.submit("App.zip")  # once the first has ended, the archive may come again


async def test_drain_lets_parts_in_flight_finish_then_the_job_resumes(db: Database, tmp_path: Path) -> None:
    script = gated(parts=6, parts_parallel=2)
    h = Harness(db, tmp_path, script, max_jobs=1, parts=2)
    async with h.scheduler as scheduler:
        job_id = await h.submit("App.zip")
        await h.record.until(lambda: h.record.in_flight == 2)
        parts_started = len(h.record.part_order)
        draining = asyncio.create_task(scheduler.drain(3600.0))
        await started(draining, h.slots)
        with pytest.raises(SchedulerClosed):
            await h.submit("other.zip")
        assert not draining.done()
        assert script.gate is not None
        script.gate.set()  # the parts in flight are acknowledged
        async with asyncio.timeout(10):  # far below the grace: the drain ended with the parts
            await draining
    assert len(h.record.part_order) == parts_started  # no new part started after the drain
    stored = await h.store.get(job_id)
    assert stored is not None and stored.state is NotaryStage.UPLOADING  # resumable, not failed
    assert stored.progress.bytes_done == 2 * script.part_bytes  # the parts in flight were acknowledged
    assert h.ended == []

    h2 = Harness(db, tmp_path, FakeScript(parts=2, wait_seconds=0), max_jobs=1, parts=2)
    async with h2.scheduler:
        resumed = await h2.scheduler.resume()
        assert [j.id for j in resumed] == [job_id]
        assert await h2.wait_state(job_id, JobOutcome.ACCEPTED) is JobOutcome.ACCEPTED


@pytest.mark.parametrize("ended_by", ["grace", "second signal"])
async def test_drain_stops_waiting_for_stuck_parts(db: Database, tmp_path: Path, ended_by: str) -> None:
    h = Harness(db, tmp_path, gated(parts=2), max_jobs=1, parts=2)  # the gate never opens
    async with h.scheduler as scheduler:
        job_id = await h.submit("App.zip")
        await h.record.until(lambda: h.record.in_flight == 2)
        hurry: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        grace = 0.05 if ended_by == "grace" else 3600.0
        draining = asyncio.create_task(scheduler.drain(grace, hurry=hurry))
        await started(draining, h.slots)
        if ended_by == "second signal":
            hurry.set_result(None)
        async with asyncio.timeout(10):
            await draining
    assert h.record.in_flight == 0  # the stuck parts were cancelled with their job
    stored = await h.store.get(job_id)
    assert stored is not None and stored.state is NotaryStage.UPLOADING


async def test_cancelling_a_resumed_job_before_it_runs_aborts_its_old_upload(db: Database, tmp_path: Path) -> None:
    h = Harness(db, tmp_path, gated(parts=50), max_jobs=1, parts=2)
    async with h.scheduler as scheduler:
        job_id = await h.submit("App.zip")
        await h.record.until(lambda: h.record.in_flight == 2)
        await scheduler.drain(0)  # daemon stops mid-upload
    h2 = Harness(db, tmp_path, FakeScript(parts=2, wait_seconds=0), max_jobs=1, parts=2)
    async with h2.scheduler as scheduler:
        await scheduler.resume()
        cancelled = await scheduler.cancel(job_id)  # before the dispatcher gets to it
        later = await h2.submit("Later.zip")  # FIFO: the dispatcher passed the cancelled job first
        await h2.wait_state(later, JobOutcome.ACCEPTED)
    assert cancelled.state is JobOutcome.CANCELLED
    assert h2.record.aborted == [tmp_path / "App.zip"]
    assert h2.record.started == [tmp_path / "Later.zip"], "a cancelled job must not start"
    stored = await h2.store.get(job_id)
    assert stored is not None and stored.state is JobOutcome.CANCELLED
