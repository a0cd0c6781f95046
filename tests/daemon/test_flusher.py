"""Flusher: batched saves and snapshots, with an in-memory store and a sleep the test releases."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from service.daemon.broker import Broker
from service.daemon.flusher import Flusher
from service.daemon.jobs import Job
from uploader.lifecycle import QUEUED, NotaryStage
from uploader.progress import Progress

from .fakes import MemoryStore


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

    async def until_sleeping(self) -> None:
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


@pytest.fixture
async def running() -> AsyncIterator[tuple[Flusher, MemoryStore, HeldSleep, Broker]]:
    store, sleep, broker = MemoryStore(), HeldSleep(), Broker()
    flusher = Flusher(store, broker, interval_seconds=0.5, sleep=sleep)  # type: ignore[arg-type]
    task = asyncio.create_task(flusher.run_forever())
    yield flusher, store, sleep, broker
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_many_changes_in_one_interval_make_one_write_and_one_snapshot(running: Any) -> None:
    flusher, store, sleep, broker = running
    j = job()
    with broker.subscribe() as sub:
        flusher.mark(j)
        await store.wait_for_writes(1)
        await sleep.until_sleeping()
        assert sleep.calls == [0.5]
        for done in (10, 20, 30):  # progress while the flusher waits out its interval
            j.progress.bytes_done = done
            flusher.mark(j)
        await asyncio.sleep(0)  # give a wrongly eager flusher the chance to write
        assert store.saved == [("j1", QUEUED, 0)]
        sleep.release()
        await store.wait_for_writes(2)
        assert store.saved[1] == ("j1", QUEUED, 30)
        assert [s.bytes_done for s in await sub.next_batch(0)] == [30]  # coalesced progress
    assert flusher.pending == 0


async def test_a_failed_write_is_tried_again_and_the_loop_lives_on(running: Any) -> None:
    flusher, store, sleep, _ = running
    a, b = job("a"), job("b")
    store.failures = 1  # the disk is full for one write
    flusher.mark(a)
    flusher.mark(b)
    await sleep.until_sleeping()
    assert [saved[0] for saved in store.saved] == ["b"]
    assert flusher.pending == 1  # a stays dirty, with nothing new to report
    sleep.release()
    await store.wait_for_writes(2)
    assert [saved[0] for saved in store.saved] == ["b", "a"]


async def test_an_ended_job_is_not_written_after_its_end() -> None:
    store, broker = MemoryStore(), Broker()
    flusher = Flusher(store, broker)  # type: ignore[arg-type]
    j = job()
    j.move_to(NotaryStage.UPLOADING)
    flusher.mark(j)
    flusher.forget(j)  # its owner records the end itself
    await flusher.flush()
    assert store.saved == []


async def test_a_final_flush_writes_what_is_pending_at_exit() -> None:
    store, broker = MemoryStore(), Broker()
    flusher = Flusher(store, broker)  # type: ignore[arg-type]
    j = job()
    j.progress.bytes_done = 70
    flusher.mark(j)
    with broker.subscribe() as sub:
        await flusher.flush()
        assert [s.bytes_done for s in await sub.next_batch(0)] == [70]
    assert store.saved == [("j1", QUEUED, 70)]


def test_publish_sends_a_snapshot_at_once() -> None:
    async def scenario() -> list[str]:
        store, broker = MemoryStore(), Broker()
        flusher = Flusher(store, broker)  # type: ignore[arg-type]
        with broker.subscribe() as sub:
            flusher.publish(job())
            return [s.state for s in await sub.next_batch(0)]

    assert asyncio.run(scenario()) == ["queued"]
