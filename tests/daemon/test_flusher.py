"""Flusher: batched saves and snapshots to the real JobStore on SQLite, with a sleep the test
releases. SQLite itself logs every write the store makes (a temporary trigger on ``jobs``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from service.daemon.broker import Broker
from service.daemon.flusher import Flusher
from service.daemon.job_states import QUEUED
from service.daemon.job_store import JobStore
from service.daemon.jobs import Job
from uploader.database import Database
from uploader.lifecycle import NotaryStage
from uploader.progress import Progress


class HeldSleep:
    """The flusher's pause between rounds, ended by the test (``release``)."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self._waiting: asyncio.Future[None] | None = None
        self.sleeping = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self._waiting = asyncio.get_running_loop().create_future()
        self.sleeping.set()
        await self._waiting

    @property
    def held(self) -> bool:
        """The flusher is in its pause: it can write nothing until the test releases it."""
        return self._waiting is not None and not self._waiting.done()

    async def until_sleeping(self) -> None:
        """Until the flusher has finished a round (its writes done) and paused."""
        async with asyncio.timeout(10):
            await self.sleeping.wait()
        self.sleeping.clear()

    def release(self) -> None:
        assert self._waiting is not None
        self._waiting.set_result(None)


def job(job_id: str = "j1") -> Job:
    now = time.time()
    return Job(id=job_id, path=Path(f"/b/{job_id}.zip"), name=None, webhook=None, skip_preflight=False,
               state=QUEUED, created_at=now, updated_at=now, progress=Progress(bytes_total=100))


async def writes(db: Database) -> list[tuple[str, str, int]]:
    """(job id, state, bytes_done) of every write to ``jobs`` so far, in order, as SQLite saw it."""
    return [(row[0], row[1], row[2]) for row in await db.fetchall("SELECT id, state, bytes_done FROM writes ORDER BY seq")]


@pytest.fixture
def store_url() -> str:
    """SQLite only: the writes are observed through SQLite triggers (the store itself is tested
    on both engines)."""
    return ""


@pytest.fixture
async def store(db: Database, job_store: JobStore) -> JobStore:
    """The real store, its writes logged into the temporary table ``writes``."""
    await db.execute("CREATE TEMP TABLE writes (seq INTEGER PRIMARY KEY, id TEXT, state TEXT, bytes_done INTEGER)")
    await db.execute("CREATE TEMP TRIGGER log_writes AFTER UPDATE ON jobs BEGIN"
                     " INSERT INTO writes (id, state, bytes_done) VALUES (NEW.id, NEW.state, NEW.bytes_done); END")
    return job_store


async def inserted(store: JobStore, *ids: str) -> list[Job]:
    jobs = [job(job_id) for job_id in ids]
    for j in jobs:
        await store.insert(j)
    return jobs


@pytest.fixture
async def running(store: JobStore) -> AsyncIterator[tuple[Flusher, HeldSleep, Broker]]:
    sleep, broker = HeldSleep(), Broker()
    flusher = Flusher(store, broker, interval_seconds=0.5, sleep=sleep)
    task = asyncio.create_task(flusher.run_forever())
    yield flusher, sleep, broker
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_many_changes_in_one_interval_make_one_write_and_one_snapshot(
    running: Any, store: JobStore, db: Database
) -> None:
    flusher, sleep, broker = running
    [j] = await inserted(store, "j1")
    with broker.subscribe() as sub:
        flusher.mark(j)
        await sleep.until_sleeping()
        assert sleep.calls == [0.5]
        assert await writes(db) == [("j1", "queued", 0)]
        for done in (10, 20, 30):  # progress while the flusher waits out its interval
            j.progress.bytes_done = done
            flusher.mark(j)
        assert sleep.held and flusher.pending == 1  # kept for the next round, not written now
        sleep.release()
        await sleep.until_sleeping()
        assert await writes(db) == [("j1", "queued", 0), ("j1", "queued", 30)]  # one write for three
        assert [s.bytes_done for s in await sub.next_batch(0)] == [30]  # coalesced progress
    assert flusher.pending == 0
    stored = await store.get("j1")
    assert stored is not None and stored.progress.bytes_done == 30 and stored.state is QUEUED


async def test_a_failed_write_is_tried_again_and_the_loop_lives_on(
    running: Any, store: JobStore, db: Database
) -> None:
    flusher, sleep, _ = running
    a, b = await inserted(store, "a", "b")
    # a's row cannot be written (SQLite refuses it, as on a full disk) until the test allows it
    await db.execute("CREATE TEMP TRIGGER refuse_a BEFORE UPDATE ON jobs WHEN NEW.id = 'a' BEGIN"
                     " SELECT RAISE(ABORT, 'database or disk is full'); END")
    flusher.mark(a)
    flusher.mark(b)
    await sleep.until_sleeping()
    assert await writes(db) == [("b", "queued", 0)]
    assert flusher.pending == 1  # a stays dirty, with nothing new to report
    await db.execute("DROP TRIGGER refuse_a")
    sleep.release()
    await sleep.until_sleeping()
    assert await writes(db) == [("b", "queued", 0), ("a", "queued", 0)]
    assert flusher.pending == 0


async def test_an_ended_job_is_not_written_after_its_end(store: JobStore, db: Database) -> None:
    flusher = Flusher(store, Broker())
    [j] = await inserted(store, "j1")
    j.move_to(NotaryStage.UPLOADING)
    flusher.mark(j)
    flusher.forget(j)  # its owner records the end itself
    await flusher.flush()
    assert await writes(db) == []


async def test_a_final_flush_writes_what_is_pending_at_exit(store: JobStore, db: Database) -> None:
    broker = Broker()
    flusher = Flusher(store, broker)
    [j] = await inserted(store, "j1")
    j.progress.bytes_done = 70
    flusher.mark(j)
    with broker.subscribe() as sub:
        await flusher.flush()
        assert [s.bytes_done for s in await sub.next_batch(0)] == [70]
    assert await writes(db) == [("j1", "queued", 70)]


async def test_publish_sends_a_snapshot_at_once(store: JobStore, db: Database) -> None:
    broker = Broker()
    flusher = Flusher(store, broker)
    with broker.subscribe() as sub:
        flusher.publish(job())
        assert [s.state for s in await sub.next_batch(0)] == ["queued"]
    assert await writes(db) == []  # publishing is not saving


async def test_a_change_of_state_is_written_without_waiting_out_the_pause(
    running: Any, store: JobStore, db: Database
) -> None:
    """A process killed just after a job began uploading must find it uploading on restart."""
    flusher, sleep, _ = running
    [j] = await inserted(store, "j1")
    flusher.mark(j)
    await sleep.until_sleeping()
    j.progress.bytes_done = 10
    flusher.mark(j)  # progress waits for the pause to end
    assert sleep.held and await writes(db) == [("j1", "queued", 0)]
    assert j.move_to(NotaryStage.UPLOADING)
    flusher.mark(j, at_once=True)  # the state does not: the pause is cut short, never released
    await sleep.until_sleeping()
    assert await writes(db) == [("j1", "queued", 0), ("j1", "uploading", 10)]
    assert sleep.calls == [0.5, 0.5]
