"""The SSE endpoint in-process (short heartbeat), and the broker's coalescing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from service.daemon.api import ApiConfig, make_app
from service.daemon.broker import Broker
from service.daemon.job_store import JobStore
from service.daemon.metrics import DaemonMetrics
from service.daemon.scheduler import Scheduler
from service.daemon.slots import PartSlots
from uploader.database import Database

from .fakes import FakeRecord, FakeScript, fake_factory

pytestmark = pytest.mark.integration


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[str, Broker]]:
    db = await Database.open(tmp_path / "db.sqlite3")
    slots, broker = PartSlots(4), Broker()
    scheduler = Scheduler(
        JobStore(db), fake_factory(slots, FakeScript(), FakeRecord(), tmp_path / "logs"),
        metrics=DaemonMetrics(), broker=broker, part_slots=slots, max_jobs=1,
    )
    config = ApiConfig(token="tok", token_hint="", allowed_roots=(tmp_path,), version="0", heartbeat_seconds=0.1)
    runner = web.AppRunner(make_app(scheduler=scheduler, metrics_=DaemonMetrics(), broker=broker, config=config))
    async with scheduler:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            yield f"http://127.0.0.1:{port}", broker
        finally:
            broker.close_all()
            await runner.cleanup()
    await db.close()


async def test_an_idle_stream_sends_heartbeats_and_ends_on_shutdown(served: tuple[str, Broker]) -> None:
    url, broker = served
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
    await asyncio.sleep(0.05)
    assert broker.subscriber_count == 0


def test_the_broker_keeps_every_state_change_but_only_the_latest_progress() -> None:
    async def scenario() -> list[tuple[str, int]]:
        broker = Broker()
        with broker.subscribe() as sub:
            for state, done in [("queued", 0), ("uploading", 1), ("uploading", 2), ("uploading", 3), ("waiting", 3)]:
                broker.publish({"id": "j", "state": state, "bytes_done": done})
            broker.publish({"id": "k", "state": "queued", "bytes_done": 0})
            return [(s["state"], s["bytes_done"]) for s in await sub.next_batch(0)]

    assert asyncio.run(scenario()) == [("queued", 0), ("uploading", 3), ("waiting", 3), ("queued", 0)]
