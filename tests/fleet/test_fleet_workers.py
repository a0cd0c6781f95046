"""Three ``notaryd serve`` workers on one PostgreSQL, the notary emulator, SeaweedFS and builds
on a shared folder: the shared queue, takeovers after SIGKILL, one submission per build."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.emulator.faultproxy import FaultProxyThread
from service.emulator.notary import BackgroundEmulator
from tests.support.daemon import Daemon
from tests.support.emulator import notary_env
from tests.support.postgres import PostgresServer
from tests.support.waiting import until
from uploader.config import MiB
from uploader.postgres import open_database

pytestmark = pytest.mark.process


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    folder = tmp_path / "builds"
    folder.mkdir()
    return folder


@pytest.fixture
def workers(tmp_path: Path, notary: BackgroundEmulator, postgres: PostgresServer, shared: Path) -> Iterator[list[Daemon]]:
    env = {**notary_env(notary, tmp_path / "keys"), "NOTARYD_DATABASE_URL": postgres.create_database(),
           "NOTARYD_ALLOWED_ROOTS": str(shared), "NOTARYD_LEASE_SECONDS": "6",
           "NOTARYD_PART_SIZE": str(5 * MiB), "NOTARYD_CONCURRENCY": "2", "NOTARYD_MAX_JOBS": "2"}
    daemons = [Daemon(tmp_path / f"w{n}", fake=False, env={**env, "NOTARYD_WORKER_NAME": f"w{n}"})
               for n in range(3)]
    try:
        yield daemons
    finally:
        for d in daemons:
            d.stop()


def build(folder: Path, name: str, size: int) -> Path:
    """1 MiB of random bytes, then a sparse tail (as ``Daemon.archive``), in the shared folder."""
    path = folder / name
    with open(path, "wb") as f:
        f.write(os.urandom(1 << 20))
        f.truncate(size)
    return path


def claims(d: Daemon) -> list[str]:
    return re.findall(r"job claimed\W+job=(\w+)", d.log())


def test_jobs_submitted_to_one_worker_are_spread_over_the_fleet_each_run_once(
    workers: list[Daemon], notary: BackgroundEmulator, shared: Path
) -> None:
    for d in workers:
        d.env["NOTARYD_BANDWIDTH_LIMIT"] = str(32 * MiB)  # a job lasts long enough to be shared
        d.env["NOTARYD_LEASE_SECONDS"] = "20"  # no takeover here: a loaded 2-core machine can stall a loop for seconds
        d.start()
    jobs = [workers[0].submit(build(shared, f"Build{n}.zip", 64 * MiB), skip_preflight=True) for n in range(24)]
    ended = [workers[0].wait_for(job["id"], "accepted", "failed", timeout=300) for job in jobs]
    assert [job["state"] for job in ended] == ["accepted"] * 24, [job.get("error") for job in ended]
    assert notary.call(lambda e: e.submissions_created) == 24
    taken = [claims(d) for d in workers]
    assert sorted(job for each in taken for job in each) == sorted(job["id"] for job in jobs)  # once each
    assert all(taken), [len(each) for each in taken]  # every worker ran some


@pytest.fixture
def proxy(notary: BackgroundEmulator) -> Iterator[FaultProxyThread]:
    """In front of the emulator's S3: counts the part bytes the workers send."""
    with FaultProxyThread(notary.emulator.s3_endpoint_url) as started:
        yield started


def test_a_job_whose_worker_is_killed_twice_is_taken_over_and_accepted_once(
    workers: list[Daemon], notary: BackgroundEmulator, shared: Path, proxy: FaultProxyThread
) -> None:
    """Each takeover resumes the same submission and multipart upload from the parts the
    shared store acknowledged: at most (concurrency + 1) parts are sent again per takeover."""
    for d in workers:
        d.env.update({"NOTARYD_BANDWIDTH_LIMIT": str(4 * MiB), "NOTARYD_S3_ENDPOINT_URL": proxy.url})
        d.start()
    job = workers[0].submit(build(shared, "Big.zip", 64 * MiB), skip_preflight=True)
    alive = list(workers)
    for _ in range(2):
        holder = until(lambda: next((d for d in alive if job["id"] in claims(d)), None), within=60,
                       what="a worker claiming the job", detail=alive[0].log)
        until(lambda h=holder: h.job(job["id"])["bytes_done"] > 10 * MiB, within=120,
              what="the holder uploading", detail=holder.log)
        holder.signal(signal.SIGKILL)
        holder.wait(timeout=30)
        alive.remove(holder)
        until(lambda: any(job["id"] in claims(d) for d in alive), within=60,
              what="another worker taking the job over", detail=alive[0].log)
    ended = alive[0].wait_for(job["id"], "accepted", "failed", timeout=300)
    assert ended["state"] == "accepted", ended
    assert notary.call(lambda e: e.submissions_created) == 1
    assert "taking over job" in alive[0].log()
    resent = proxy.stats.part_body_bytes_received - 64 * MiB
    assert resent <= 2 * (2 + 1) * 5 * MiB, resent / MiB


def test_restarting_postgresql_mid_run_loses_and_duplicates_no_job(
    workers: list[Daemon], notary: BackgroundEmulator, shared: Path, postgres: PostgresServer
) -> None:
    for d in workers:
        d.env["NOTARYD_BANDWIDTH_LIMIT"] = str(8 * MiB)
        d.start()
    jobs = [workers[0].submit(build(shared, f"Build{n}.zip", 16 * MiB), skip_preflight=True) for n in range(9)]
    until(lambda: sum(len(claims(d)) for d in workers) >= 3, within=60, what="jobs running")
    postgres.restart()
    ended = [workers[0].wait_for(job["id"], "accepted", "failed", timeout=300) for job in jobs]
    assert [job["state"] for job in ended] == ["accepted"] * 9, [job.get("error") for job in ended]
    assert notary.call(lambda e: e.submissions_created) == 9
    assert any("reachable again" in d.log() for d in workers)


def test_one_archive_submitted_on_two_workers_at_once_is_one_job_and_one_submission(
    workers: list[Daemon], notary: BackgroundEmulator, shared: Path
) -> None:
    for d in workers[:2]:
        d.start()
    archive = build(shared, "Same.zip", 8 * MiB)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda d: d.request("POST", "/v1/jobs", {"path": str(archive), "skip_preflight": True}),
                                workers[:2]))
    assert sorted(status for status, _ in answers) == [201, 409], answers
    job = next(body for status, body in answers if status == 201)
    assert workers[1].wait_for(job["id"], "accepted", "failed", timeout=120)["state"] == "accepted"
    assert notary.call(lambda e: e.submissions_created) == 1


def test_a_job_is_cancelled_on_the_worker_running_it_and_refused_with_its_name_elsewhere(
    workers: list[Daemon], shared: Path
) -> None:
    for d in workers[:2]:
        d.env["NOTARYD_BANDWIDTH_LIMIT"] = str(1 * MiB)
        d.start()
    job = workers[0].submit(build(shared, "Slow.zip", 64 * MiB), skip_preflight=True)
    holder = until(lambda: next((d for d in workers[:2] if job["id"] in claims(d)), None), within=60,
                   what="a worker claiming the job")
    other = workers[1] if holder is workers[0] else workers[0]
    until(lambda: holder.job(job["id"])["state"] == "uploading", within=60, what="uploading")
    status, refused = other.request("DELETE", f"/v1/jobs/{job['id']}")
    holder_name = "w0" if holder is workers[0] else "w1"
    assert status == 409 and f"runs on worker {holder_name}" in refused["error"], refused
    assert other.job(job["id"])["worker"] == holder_name
    status, _ = holder.request("DELETE", f"/v1/jobs/{job['id']}")
    assert status == 200
    assert other.wait_for(job["id"], "cancelled", timeout=60)["state"] == "cancelled"


async def _sql(url: str, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    db = await open_database(Path("/nonexistent"), url)
    try:
        if sql.lstrip().upper().startswith("SELECT"):
            return [tuple(row) for row in await db.fetchall(sql, params)]
        await db.execute(sql, params)
        return []
    finally:
        await db.close()


def test_a_live_worker_whose_lease_is_taken_stops_and_its_successor_resumes_without_rehashing(
    workers: list[Daemon], notary: BackgroundEmulator, shared: Path, proxy: FaultProxyThread
) -> None:
    """The lease of a running job is taken over in SQL (as a worker would after a network cut):
    the old worker, still alive, writes nothing more and makes no further S3 call; the next
    worker resumes the same submission and upload without reading the file again, although it
    sees another inode and ctime (as another NFS/SMB client would)."""
    old, new = workers[0], workers[1]
    url = old.env["NOTARYD_DATABASE_URL"]
    for d in (old, new):
        d.env.update({"NOTARYD_BANDWIDTH_LIMIT": str(4 * MiB), "NOTARYD_S3_ENDPOINT_URL": proxy.url})
    old.start()
    job = old.submit(build(shared, "Held.zip", 64 * MiB), skip_preflight=True)
    until(lambda: old.job(job["id"])["bytes_done"] > 10 * MiB, within=120, what="uploading", detail=old.log)
    # Taken away: a generation the old worker does not hold, live for long enough that nobody
    # claims it before the old worker is seen to stop.
    asyncio.run(_sql(url, "UPDATE fleet_leases SET worker = 'elsewhere', generation = generation + 1,"
                          " lease_until = 4e9 WHERE job = ?", (job["id"],)))
    until(lambda: re.search(rf"job (finished|interrupted)\W+job={job['id']}", old.log()), within=60,
          what="the old worker stopping the job", detail=old.log)
    assert "lost its lease" in old.log()
    s3_calls = dict(proxy.stats.operations)
    done = asyncio.run(_sql(url, "SELECT count(*) FROM parts WHERE state = 'done'"))
    row = asyncio.run(_sql(url, "SELECT state FROM jobs WHERE id = ?", (job["id"],)))
    assert row[0][0] not in ("failed", "cancelled"), row  # its failure was never written
    # Another host's view of the same file (inode numbers and ctimes differ across clients).
    asyncio.run(_sql(url, "UPDATE uploads SET inode = inode + 1, ctime_ns = ctime_ns + 1"))
    old.stop()  # it must not claim the job back itself: the successor is another worker
    assert dict(proxy.stats.operations) == s3_calls  # no S3 call since it lost the lease
    assert asyncio.run(_sql(url, "SELECT count(*) FROM parts WHERE state = 'done'")) == done
    old_bytes = proxy.stats.part_body_bytes_received
    new.start()
    asyncio.run(_sql(url, "UPDATE fleet_leases SET lease_until = 0 WHERE job = ?", (job["id"],)))
    until(lambda: re.search(rf"job state\W+job={job['id']} state=uploading", new.log()), within=60,
          what="the successor uploading", detail=new.log)  # past hashing, if it hashed
    assert new.job(job["id"])["bytes_hashed"] == 0  # the recorded SHA-256 was trusted
    ended = new.wait_for(job["id"], "accepted", "failed", timeout=300)
    assert ended["state"] == "accepted", ended
    assert notary.call(lambda e: e.submissions_created) == 1
    assert proxy.stats.operations["CreateMultipartUpload"] == 1  # the same multipart upload
    assert "taking over job" in new.log()
    resent = proxy.stats.part_body_bytes_received - 64 * MiB
    print(f"lease taken in SQL: {done[0][0]} parts done, old sent {old_bytes / MiB:.1f} MiB; "
          f"re-sent {resent / MiB:.1f} MiB, re-hashed 0 bytes")
    assert resent <= (2 + 1) * 5 * MiB, resent / MiB
