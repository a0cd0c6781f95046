"""``notaryd serve`` on the fleet store: a real daemon, the notary emulator, SeaweedFS and the
suite's PostgreSQL (NOTARYD_DATABASE_URL), restarted under it mid-run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from service.emulator.notary import BackgroundEmulator
from tests.support.daemon import Daemon
from tests.support.postgres import PostgresServer
from uploader.config import MiB
from uploader.postgres import open_database

pytestmark = pytest.mark.process


async def _rows(url: str, sql: str) -> list[tuple[object, ...]]:
    db = await open_database(Path("/nonexistent"), url)
    try:
        return [tuple(row) for row in await db.fetchall(sql)]
    finally:
        await db.close()


def test_jobs_and_submissions_live_in_postgresql_and_survive_its_restart(
    real_daemon: Daemon, notary: BackgroundEmulator, postgres: PostgresServer
) -> None:
    url = postgres.create_database()
    d = real_daemon
    d.env.update({"NOTARYD_DATABASE_URL": url, "NOTARYD_PART_SIZE": str(5 * MiB),
                  "NOTARYD_BANDWIDTH_LIMIT": str(8 * MiB), "NOTARYD_MAX_JOBS": "2"})
    d.start()
    jobs = [d.submit(d.archive(f"Build{n}.zip", 20 * MiB), skip_preflight=True) for n in range(4)]
    d.wait_for(jobs[0]["id"], "uploading", timeout=60)
    postgres.restart()  # every connection cut while parts are being acknowledged
    ended = [d.wait_for(job["id"], "accepted", "failed", timeout=120) for job in jobs]
    assert [job["state"] for job in ended] == ["accepted"] * 4, [job.get("error") for job in ended]
    assert notary.call(lambda e: e.submissions_created) == 4  # none made twice
    assert not (d.state_dir / "notaryd.sqlite3").exists()  # nothing went to SQLite
    rows = asyncio.run(_rows(url, "SELECT state, count(*) FROM jobs GROUP BY state"))
    assert rows == [("accepted", 4)]
    submissions = asyncio.run(_rows(url, "SELECT count(*), count(DISTINCT sha256) FROM submissions"))
    assert submissions == [(4, 4)]
    log = d.log()
    assert "unreachable" in log and "reachable again" in log, log[-3000:]
