"""The SSE endpoint in-process (short heartbeat), and the broker's coalescing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from service.daemon.api import make_app
from service.daemon.api_context import ApiConfig
from service.daemon.broker import Broker
from service.daemon.job_states import QUEUED, JobState
from service.daemon.job_store import JobStore
from service.daemon.metrics import DaemonMetrics
from service.daemon.slots import PartSlots
from service.daemon.snapshot import JobSnapshot
from uploader.database import Database
from uploader.lifecycle import NotaryStage

from .fakes import FakeRecord, FakeScript, fake_factory, fake_scheduler


@dataclass
class Served:
    url: str
    broker: Broker
    runner: web.AppRunner
    stopped: bool = False

    async def stop(self) -> None:
        """What the daemon does on shutdown: end the streams, then close the listener."""
        if not self.stopped:
            self.stopped = True
            self.broker.close_all()
            await self.runner.cleanup()

pytestmark = pytest.mark.integration


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    db = await Database.open(tmp_path / "db.sqlite3")
    slots, broker = PartSlots(4), Broker()
    scheduler = fake_scheduler(
        await JobStore.open(db), fake_factory(slots, FakeScript(), FakeRecord(), tmp_path / "logs"), broker,
        slots, max_jobs=1,
    )
    config = ApiConfig(token="tok", token_hint="", allowed_roots=(tmp_path,), version="0", heartbeat_seconds=0.1)
    runner = web.AppRunner(make_app(scheduler=scheduler, metrics_=DaemonMetrics(), broker=broker, config=config))
    async with scheduler:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        served = Served(f"http://127.0.0.1:{port}", broker, runner)
        try:
            yield served
        finally:
            await served.stop()
    await db.close()


async def test_an_idle_stream_sends_heartbeats_and_ends_on_shutdown(served: Served) -> None:
    url, broker = served.url, served.broker
    async with (
        aiohttp.ClientSession(headers={"Authorization": "Bearer tok"}) as session,
        session.get(url + "/v1/events") as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        heartbeats = 0
        async with asyncio.timeout(5):
            async for line in response.content:
                if line.startswith(b": heartbeat"):
                    heartbeats += 1
                    if heartbeats == 3:
                        break
        assert broker.subscriber_count == 1
        broker.close_all()  # what the daemon does on shutdown
        async with asyncio.timeout(5):
            rest = await response.content.read()
        assert b"event:" not in rest
    await served.stop()  # returns once every handler has returned
    assert broker.subscriber_count == 0


def test_the_broker_keeps_every_state_change_but_only_the_latest_progress() -> None:
    async def scenario() -> list[tuple[str, int]]:
        broker = Broker()
        with broker.subscribe() as sub:
            for state, done in [(QUEUED, 0), (NotaryStage.UPLOADING, 1), (NotaryStage.UPLOADING, 2),
                                (NotaryStage.UPLOADING, 3), (NotaryStage.WAITING, 3)]:
                broker.publish(_snapshot("j", state, done))
            broker.publish(_snapshot("k", QUEUED, 0))
            return [(s.state, s.bytes_done) for s in await sub.next_batch(0)]

    assert asyncio.run(scenario()) == [("queued", 0), ("uploading", 3), ("waiting", 3), ("queued", 0)]


def _snapshot(job_id: str, state: JobState, bytes_done: int) -> JobSnapshot:
    return JobSnapshot(
        id=job_id, path="/a.zip", state=state, bytes_total=3, bytes_done=bytes_done,
        rate_bytes_per_second=0.0, eta_seconds=None, submission_id=None, notary_status=None,
        error=None, created_at=0.0, updated_at=0.0, started_at=None, finished_at=None,
    )
