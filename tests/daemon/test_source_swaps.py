"""A local user swaps the archive after POST: the job fails with one clear line, nothing outside
the allowed roots is read or uploaded, nothing hangs (a bundle's Info.plist linked to a FIFO
neither), and SIGTERM is not held up by hashing."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from service.emulator.notary import BackgroundEmulator
from service.emulator.sample_app import make_sample_app
from tests.support.daemon import Daemon
from tests.support.waiting import release_fifo, until

pytestmark = pytest.mark.process

MiB = 1024 * 1024


def swap_for_symlink(archive: Path, target: Path) -> None:
    archive.unlink()
    archive.symlink_to(target)


def outside_secret(tmp_path: Path) -> Path:
    secret = tmp_path / "outside" / "secret.p8"
    secret.parent.mkdir(exist_ok=True)
    secret.write_bytes(os.urandom(200_000))
    return secret


@pytest.fixture
def one_at_a_time(tmp_path: Path) -> Daemon:
    """Fake pipeline, one job at a time, ~2 s per job: later jobs wait long enough to be swapped."""
    d = Daemon(tmp_path, env={"FAKE_PARTS": "4", "FAKE_PART_SECONDS": "1", "NOTARYD_MAX_JOBS": "1"})
    return d.start()


def test_swaps_while_queued_fail_the_job_with_one_line(one_at_a_time: Daemon, tmp_path: Path) -> None:
    d = one_at_a_time
    first = d.submit(d.archive("First.zip"), skip_preflight=True)
    linked, piped, replaced = (d.archive(f"{n}.zip") for n in ("Linked", "Piped", "Replaced"))
    jobs = [d.submit(path, skip_preflight=True) for path in (linked, piped, replaced)]
    swap_for_symlink(linked, outside_secret(tmp_path))
    piped.unlink()
    os.mkfifo(piped)  # no writer: opening it for reading would hang a blocking open
    fresh = d.archives / "fresh.zip"
    fresh.write_bytes(os.urandom(100_000))
    os.replace(fresh, replaced)
    ended = [d.wait_for(j["id"], "accepted", "failed", timeout=60) for j in jobs]
    assert [j["state"] for j in ended] == ["failed"] * 3, ended
    assert "symbolic link" in ended[0]["error"]
    assert "not a regular file (a FIFO)" in ended[1]["error"]
    assert "changed since it was submitted (the file was replaced (inode changed)" in ended[2]["error"]
    assert all("\n" not in j["error"] for j in ended)
    assert d.wait_for(first["id"], "accepted")["state"] == "accepted"


def test_a_resumed_job_is_checked_again(one_at_a_time: Daemon, tmp_path: Path) -> None:
    d = one_at_a_time
    archive = d.archive("Resumed.zip")
    job = d.submit(archive, skip_preflight=True)
    d.wait_for(job["id"], "uploading")
    d.kill()  # SIGKILL: the job stays "uploading" in SQLite and resumes at the next start
    swap_for_symlink(archive, outside_secret(tmp_path))
    d.start()
    ended = d.wait_for(job["id"], "accepted", "failed")
    assert ended["state"] == "failed" and "symbolic link" in ended["error"], ended
    assert "resuming job" in d.log()


def test_a_file_swapped_for_a_symlink_after_post_is_never_uploaded(
    real_daemon: Daemon, notary: BackgroundEmulator, tmp_path: Path
) -> None:
    d = real_daemon
    d.env.update({"NOTARYD_MAX_JOBS": "1", "NOTARYD_BANDWIDTH_LIMIT": str(5 * MiB)})
    d.start()
    first = d.submit(d.archive("First.zip", 10 * MiB), skip_preflight=True)
    archive = d.archive("Second.zip", 6 * MiB)
    second = d.submit(archive, skip_preflight=True)
    swap_for_symlink(archive, outside_secret(tmp_path))
    ended = d.wait_for(second["id"], "accepted", "failed", timeout=60)
    assert ended["state"] == "failed" and "symbolic link" in ended["error"], ended
    assert d.wait_for(first["id"], "accepted", "failed", timeout=60)["state"] == "accepted"
    assert notary.call(lambda e: e.submissions_created) == 1  # only First.zip was ever sent


def test_sigterm_while_hashing_exits_within_the_grace_period(real_daemon: Daemon) -> None:
    d = real_daemon
    d.env["NOTARYD_SHUTDOWN_GRACE"] = "2"
    d.start()
    archive = d.archive("Huge.zip", 64 * 1024 * MiB)  # sparse 64 GiB: hashing it takes minutes
    job = d.submit(archive, skip_preflight=True)
    d.wait_for(job["id"], "hashing")
    until(lambda: d.job(job["id"])["bytes_hashed"] > 0, within=30, what="inside the hashing pass", detail=d.log)
    d.signal(signal.SIGTERM)
    # the grace (2 s) plus the listener's 2 s; the hashing pass alone would take minutes
    assert d.wait(timeout=15) == 0, d.log()
    assert "job interrupted" in d.log()


def test_bundles_whose_info_plist_links_to_a_fifo_hang_neither_jobs_nor_the_daemon(
    real_daemon: Daemon, notary: BackgroundEmulator, tmp_path: Path
) -> None:
    d = real_daemon
    d.env["NOTARYD_TICKET_URL"] = notary.emulator.ticket_url
    d.start()
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # nobody writes to it: a blocking open of it never returns
    jobs = []
    for n in range(8):  # more than the worker threads a 2-CPU machine's default pool has
        app = make_sample_app(d.archives / f"build{n}", f"Game{n}")
        info = app / "Contents" / "Info.plist"
        info.unlink()
        info.symlink_to(fifo)
        jobs.append(d.submit(app, skip_preflight=True))
    try:
        ended = [d.wait_for(job["id"], "accepted", "failed", "cancelled", timeout=90) for job in jobs]
    finally:
        for _ in jobs:  # on a daemon that hangs, let its stuck threads go
            release_fifo(fifo)
    assert [job["state"] for job in ended] == ["accepted"] * len(jobs), ended  # not stapled, said so
    status, after = d.request("POST", "/v1/jobs", {"path": str(d.archive("After.zip")),
                                                   "skip_preflight": True}, timeout=20)
    assert status == 201, after
    d.signal(signal.SIGTERM)
    assert d.wait(timeout=30) == 0, d.log()[-3000:]
