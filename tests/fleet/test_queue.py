"""Claims, leases, fencing, heartbeats and the shared budget (service/fleet), on both stores
(``db``) and, for what only many workers show, on the suite's PostgreSQL with one connection
per worker, as separate ``notaryd serve`` processes have."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from service.daemon.job_states import QUEUED, JobOutcome
from service.daemon.job_store import JobStore
from service.daemon.jobs import Job
from service.fleet.budget import SharedBudget, api_budget_traces
from service.fleet.queue import Fleet, Lease, LeaseLost
from tests.support.postgres import PostgresServer
from uploader.database import Database
from uploader.fence import fenced_by
from uploader.notary.store import SubmissionStore
from uploader.postgres import open_database
from uploader.progress import Progress
from uploader.source_file import SharedIdentity


def anything(_: Path) -> bool:
    return True


async def enqueue(db: Database, *ids: str) -> None:
    store = await JobStore.open(db)
    for n, job_id in enumerate(ids):
        now = time.time() + n  # created in this order
        await store.insert(Job(id=job_id, path=Path(f"/builds/{job_id}.zip"), name=None, webhook=None,
                               skip_preflight=False, state=QUEUED, created_at=now, updated_at=now,
                               progress=Progress(bytes_total=100)))


async def expire(db: Database, job: str) -> None:
    """The holder stopped renewing long ago (killed, host down, network cut)."""
    await db.execute("UPDATE fleet_leases SET lease_until = 0 WHERE job = ?", (job,))


async def test_a_job_is_claimed_once_oldest_first_and_only_where_it_may_be_opened(db: Database) -> None:
    a, b = await Fleet.open(db, "a"), await Fleet.open(db, "b")
    await enqueue(db, "j1", "j2", "j3")
    first = await a.claim(lambda path: path.name != "j1.zip")  # a cannot open j1 here
    assert first is not None and (first.job, first.generation, first.worker) == ("j2", 1, "a")
    second = await b.claim(anything)
    assert second is not None and second.job == "j1"
    third = await b.claim(anything)
    assert third is not None and third.job == "j3"
    assert await a.claim(anything) is None  # every job is held
    assert await a.queue_depth() == 0
    assert await a.holders() == {"j1": "b", "j2": "a", "j3": "b"}


async def test_an_expired_lease_is_taken_over_and_the_old_holder_is_fenced_off(db: Database) -> None:
    a, b = await Fleet.open(db, "a"), await Fleet.open(db, "b")
    await enqueue(db, "j1")
    held = await a.claim(anything)
    assert held is not None
    held = await a.renew(held)  # renewing a live lease keeps the generation
    assert held.generation == 1
    await expire(db, "j1")
    assert await a.queue_depth() == 1
    taken = await b.claim(anything)
    assert taken is not None and (taken.worker, taken.generation) == ("b", 2)
    with pytest.raises(LeaseLost, match="lost its lease"):
        await a.renew(held)
    with pytest.raises(LeaseLost):
        async with a.fenced(held) as tx:
            await tx.execute("UPDATE jobs SET state = 'failed' WHERE id = ?", ("j1",))
    assert (await db.fetchone("SELECT state FROM jobs WHERE id = 'j1'"))["state"] == "queued"
    await a.release(held)  # a stale holder's release does not drop the new lease
    assert await a.holders() == {"j1": "b"}
    with pytest.raises(LeaseLost):
        await a.let_go(held)
    await b.let_go(taken)  # b stops without ending it (shutdown): a may take it at once
    taken = await a.claim(anything)
    assert taken is not None and (taken.worker, taken.generation) == ("a", 3)
    await a.record_identity(taken, SharedIdentity(100, 123, "ab" * 32))
    assert await a.identity("j1") == SharedIdentity(100, 123, "ab" * 32)
    await a.release(taken)
    assert await a.holders() == {}


async def test_an_ended_job_is_not_claimed(db: Database) -> None:
    fleet = await Fleet.open(db, "a")
    await enqueue(db, "j1")
    await db.execute("UPDATE jobs SET state = ? WHERE id = 'j1'", (str(JobOutcome.ACCEPTED),))
    assert await fleet.claim(anything) is None
    assert await fleet.queue_depth() == 0


async def test_the_lease_keeper_renews_until_the_lease_is_lost(db: Database) -> None:
    a, b = await Fleet.open(db, "a", lease_seconds=30), await Fleet.open(db, "b")
    await enqueue(db, "j1")
    held = await a.claim(anything)
    assert held is not None
    ticks: list[float] = []

    async def tick(seconds: float) -> None:
        ticks.append(seconds)
        if len(ticks) == 3:  # after two renewals the holder stalls and b takes the job
            await expire(db, "j1")
            assert await b.claim(anything) is not None

    lost = await a.keep(held, sleep=tick)
    assert isinstance(lost, LeaseLost) and ticks == [10.0, 10.0, 10.0]


async def test_heartbeats_count_live_workers(db: Database) -> None:
    a, b = await Fleet.open(db, "a"), await Fleet.open(db, "b")
    await a.heartbeat()
    await b.heartbeat()
    await a.heartbeat()
    assert await a.live_workers() == 2
    await db.execute("UPDATE fleet_workers SET heartbeat_at = 0 WHERE name = 'b'")
    assert await a.live_workers() == 1


@pytest.fixture
async def workers(postgres: PostgresServer) -> AsyncIterator[list[Fleet]]:
    """Three workers, each with its own connection to one database."""
    url = postgres.create_database()
    dbs = [await open_database(Path("/nonexistent"), url) for _ in range(3)]
    try:
        yield [await Fleet.open(db, f"w{n}") for n, db in enumerate(dbs)]
    finally:
        for db in dbs:
            await db.close()


async def test_three_workers_claiming_at_once_take_every_job_exactly_once(workers: list[Fleet]) -> None:
    await enqueue(workers[0]._db, *(f"j{n:02}" for n in range(24)))

    async def drain(fleet: Fleet) -> list[Lease]:
        taken = []
        while (lease := await fleet.claim(anything)) is not None:
            taken.append(lease)
        return taken

    claims = [lease for taken in await asyncio.gather(*(drain(f) for f in workers)) for lease in taken]
    assert sorted(lease.job for lease in claims) == [f"j{n:02}" for n in range(24)]
    assert {lease.generation for lease in claims} == {1}
    assert await workers[1].queue_depth() == 0


async def test_the_team_budget_is_shared_by_every_worker(workers: list[Fleet]) -> None:
    budgets = [SharedBudget(f._db, f, "team-key", rate=0.001, burst=3) for f in workers]
    waits = await asyncio.gather(*(b.take() for b in budgets for _ in range(4)))
    assert sorted(w == 0 for w in waits).count(True) == 3  # three tokens for the whole fleet
    assert all(w > 100 for w in waits if w)  # the next one is ~1000 s away at this rate


async def test_only_notary_api_requests_wait_for_the_fleets_budget(workers: list[Fleet]) -> None:
    fleet = workers[0]
    budget = SharedBudget(fleet.db, fleet, "notary-api:KEY", rate=0.001, burst=2)
    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/{tail:.*}", ok)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:  # time passes: the bucket is full again
        waits.append(seconds)
        await fleet.db.execute("UPDATE rate_buckets SET tokens = 2 WHERE name = 'notary-api:KEY'")

    async with TestServer(app, host="127.0.0.1") as server:
        api = f"http://127.0.0.1:{server.port}"
        async with aiohttp.ClientSession(trace_configs=api_budget_traces(budget, api, sleep)) as session:
            for path in ("/v2/a", "/v2/b", "/v2/c"):
                async with session.get(api + path) as answer:
                    assert answer.status == 200
            async with session.get(f"http://localhost:{server.port}/log") as answer:  # not the API
                assert answer.status == 200
    assert len(waits) == 1 and waits[0] > 100  # the third API request waited for a token
    row = await fleet.db.fetchone("SELECT tokens FROM rate_buckets WHERE name = 'notary-api:KEY'")
    assert 0.99 < row["tokens"] < 1.01  # refilled to 2, then the third took one; the log none


@pytest.mark.process  # pg_ctl restart
async def test_a_queued_job_wakes_idle_workers_even_after_a_restart(
    workers: list[Fleet], postgres: PostgresServer
) -> None:
    woken = [asyncio.Event() for _ in workers]
    for fleet, event in zip(workers, woken, strict=True):
        await fleet.listen(event.set)
    await workers[0].announce()
    await asyncio.gather(*(event.wait() for event in woken))
    for event in woken:
        event.clear()
    await asyncio.to_thread(postgres.restart)
    await workers[1].announce()  # its connection is made again; the others' on their next use
    for fleet in workers:
        await fleet.heartbeat()
    await workers[2].announce()
    await asyncio.gather(*(event.wait() for event in woken))


async def test_a_lease_fences_the_library_writes_of_its_job_and_carries_the_file_identity(
    db: Database, tmp_path: Path
) -> None:
    """``Fleet.fence``: the library's stores write for a job only while this worker holds its
    lease's generation; the file's identity across hosts goes to the successor."""
    a, b = await Fleet.open(db, "a"), await Fleet.open(db, "b")
    await enqueue(db, "j1")
    held = await a.claim(anything)
    assert held is not None
    store = SubmissionStore(db)
    with fenced_by(a.fence(held)):
        intent = await store.record_intent("j1.zip", "ab" * 32, "/builds/j1.zip")
        await a.fence(held).record_identity(SharedIdentity(100, 123, "ab" * 32))
    await expire(db, "j1")
    taken = await b.claim(anything)
    assert taken is not None
    with fenced_by(a.fence(held)), pytest.raises(LeaseLost, match="lost its lease"):
        await store.attach_intent(intent, "s-1")  # the old holder: refused, nothing written
    assert [i.id for i in await store.dangling_intents()] == [intent]
    assert await b.fence(taken).recorded_identity() == SharedIdentity(100, 123, "ab" * 32)
    with fenced_by(b.fence(taken)):
        await store.attach_intent(intent, "s-1")
    assert await store.dangling_intents() == []
