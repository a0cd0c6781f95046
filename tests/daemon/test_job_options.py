"""The daemon carries --no-staple/--force/--keep-archive from the API to the pipeline, durably."""

from __future__ import annotations

import time
from pathlib import Path

from service.daemon.job_options import JobOptions
from service.daemon.job_states import QUEUED
from service.daemon.job_store import JobStore
from service.daemon.jobs import Job
from tests.support.daemon import Daemon
from uploader.database import Database


async def test_options_survive_the_job_store(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "state.sqlite3")
    try:
        store = await JobStore.open(db)
        now = time.time()
        chosen = JobOptions(staple=False, force=True, keep_archive=True)
        for job_id, options in (("a" * 12, chosen), ("b" * 12, JobOptions())):
            await store.insert(Job(id=job_id, path=tmp_path / "Game.app", name=None,
                                   webhook=None, skip_preflight=False, state=QUEUED,
                                   created_at=now, updated_at=now, options=options))
        again = await store.get("a" * 12)
        assert again is not None and again.options == chosen
        await db.execute("UPDATE jobs SET options = NULL WHERE id = ?", ("b" * 12,))
        older = await store.get("b" * 12)  # a job queued before the column existed
        assert older is not None and older.options == JobOptions()
    finally:
        await db.close()


def test_api_takes_and_checks_the_options(daemon: Daemon) -> None:
    archive = daemon.archive("Game.zip")
    status, reply = daemon.request("POST", "/v1/jobs", {"path": str(archive), "force": "yes"})
    assert status == 400 and "'force' must be true or false" in reply["error"]
    job = daemon.submit(archive, staple=False, keep_archive=True)
    assert (job["staple"], job["force"], job["keep_archive"]) == (False, False, True)
    assert daemon.job(job["id"])["staple"] is False
