"""Disk: zips made from bundles go to NOTARYD_WORK_DIR, are refused when they cannot fit, are
removed when a run fails or is cancelled, and `notaryd state prune` removes what is left over."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import shutil
import stat
import time
from pathlib import Path

import pytest

from service.cli import main
from service.daemon.job_states import QUEUED
from service.daemon.job_store import JobStore
from service.daemon.jobs import Job
from service.emulator.notary import NotaryEmulator
from service.emulator.sample_app import make_sample_app
from service.settings import load_settings
from tests.support.daemon import Daemon
from tests.support.files import make_file
from tests.support.notary import notarize
from tests.support.waiting import until
from uploader.bundle_zip import archive_path_for
from uploader.config import MiB
from uploader.credentials import Credentials
from uploader.database import Database
from uploader.errors import ConfigError
from uploader.events import Event, HashProgress, UploadStateChanged
from uploader.lifecycle import UploadState
from uploader.notary.client import NewSubmission
from uploader.notary.errors import AgreementMissing
from uploader.notary.pipeline import NotarizeRequest, NotaryConfig
from uploader.notary.store import SubmissionStore
from uploader.work_dir import ZipLock, check_room


def zips_in(directory: Path) -> list[str]:
    """What packaging left in ``<directory>/archives``: zips and their companions."""
    archives = directory / "archives"
    return sorted(p.name for p in archives.iterdir()) if archives.exists() else []


# -- NOTARYD_WORK_DIR ---------------------------------------------------------------------------


def test_notaryd_work_dir_is_a_setting_that_reaches_the_pipeline(tmp_path: Path) -> None:
    (tmp_path / "empty.toml").write_text("")
    env = {"NOTARYD_STATE_DIR": str(tmp_path / "state"), "NOTARYD_WORK_DIR": str(tmp_path / "fast"),
           "NOTARYD_KEY_ID": "K", "NOTARYD_ISSUER_ID": "I", "NOTARYD_PRIVATE_KEY": "/k.p8",
           "NOTARYD_CONFIG": str(tmp_path / "empty.toml")}
    settings = load_settings(env)
    assert settings.notary_config().work_dir_in_effect == tmp_path / "fast"
    del env["NOTARYD_WORK_DIR"]
    assert load_settings(env).notary_config().work_dir_in_effect == tmp_path / "state"


async def test_the_zip_goes_to_the_work_dir_private(
    emulator: NotaryEmulator, notary_config: NotaryConfig, db: Database, tmp_path: Path
) -> None:
    scratch = tmp_path / "scratch"
    config = dataclasses.replace(notary_config, work_dir=scratch)
    app = make_sample_app(tmp_path / "build", "Kept")
    outcome = await notarize(db, config, NotarizeRequest(app, skip_preflight=True, staple=False,
                                                         keep_archive=True))
    assert outcome.accepted
    assert zips_in(scratch) == [archive_path_for(app, scratch).name,
                                archive_path_for(app, scratch).name + ".tree"]
    assert stat.S_IMODE(os.stat(scratch / "archives").st_mode) == 0o700
    assert zips_in(notary_config.state_dir) == []


# -- failed and cancelled runs leave no zip -----------------------------------------------------


async def test_a_run_that_fails_after_packaging_removes_its_zip(
    emulator: NotaryEmulator, notary_config: NotaryConfig, db: Database, tmp_path: Path
) -> None:
    config = dataclasses.replace(notary_config, work_dir=tmp_path / "scratch")
    app = make_sample_app(tmp_path / "build", "Refused")
    emulator.faults.agreement_missing = True  # the submission is refused once the zip exists
    events: list[Event] = []
    with pytest.raises(AgreementMissing):
        await notarize(db, config, NotarizeRequest(app, skip_preflight=True), [events.append])
    assert any(isinstance(e, HashProgress) for e in events)  # it had been packaged
    assert zips_in(tmp_path / "scratch") == []


@pytest.mark.process
def test_cancelling_a_bundle_job_removes_its_zip(real_daemon: Daemon, tmp_path: Path) -> None:
    d = real_daemon
    scratch = tmp_path / "scratch"
    d.env.update({"NOTARYD_WORK_DIR": str(scratch), "NOTARYD_BANDWIDTH_LIMIT": str(4 * MiB)})
    d.start()
    app = make_sample_app(d.archives, "Cancelled")
    make_file(app / "Contents" / "Resources" / "data.bin", 24 * MiB)  # incompressible: stored
    job = d.submit(app, skip_preflight=True)
    zipped = archive_path_for(app, scratch)
    until(lambda: d.job(job["id"])["state"] == "uploading" and zipped.exists(), within=60,
          what="the bundle's zip being uploaded", detail=d.log)

    status, cancelled = d.request("DELETE", f"/v1/jobs/{job['id']}")

    assert status == 200 and cancelled["state"] == "cancelled", cancelled
    assert zips_in(scratch) == []


# -- room for the zip --------------------------------------------------------------------------


def sparse_bundle(tmp_path: Path, size: int) -> Path:
    app = make_sample_app(tmp_path / "build", "Huge")
    os.truncate(app / "Contents" / "Resources" / "readme.txt", size)  # no disk used
    return app


def mib_numbers(message: str) -> list[int]:
    return [int(n.replace(",", "")) for n in re.findall(r"([\d,]+) MiB", message)]


def test_a_bundle_larger_than_the_free_space_is_refused_with_the_numbers(tmp_path: Path) -> None:
    work = tmp_path / "scratch"
    free = shutil.disk_usage(tmp_path).free
    size = free + 64 * 1024**3  # far more than the free space, even if others free some
    app = sparse_bundle(tmp_path, size)
    with pytest.raises(ConfigError, match="NOTARYD_WORK_DIR") as refused:
        check_room(app, work)
    needed, available, *_ = mib_numbers(str(refused.value))
    bundle_bytes = sum(p.stat().st_size for p in app.rglob("*") if p.is_file() and not p.is_symlink())
    assert needed == round(bundle_bytes / MiB)
    assert available < needed and str(work / "archives") in str(refused.value)
    check_room(make_sample_app(tmp_path / "small", "Small"), work)  # a bundle that fits passes


async def test_the_pipeline_refuses_before_zipping_or_submitting(
    emulator: NotaryEmulator, notary_config: NotaryConfig, db: Database, tmp_path: Path
) -> None:
    app = sparse_bundle(tmp_path, shutil.disk_usage(tmp_path).free + 64 * 1024**3)
    config = dataclasses.replace(notary_config, work_dir=tmp_path / "scratch")
    events: list[Event] = []
    with pytest.raises(ConfigError, match=r"only [\d,]+ MiB is free"):
        await notarize(db, config, NotarizeRequest(app, skip_preflight=True), [events.append])
    assert not any(isinstance(e, HashProgress) for e in events)
    assert zips_in(tmp_path / "scratch") == [] and emulator.submissions_created == 0


# -- notaryd state prune -----------------------------------------------------------------------


def leave(path: Path, size: int, *, age_seconds: float = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    make_file(path, size)
    when = time.time() - age_seconds
    os.utime(path, (when, when))
    return path


async def record_submission(db: Database, zipped: Path, *, expires_in: float) -> None:
    """An unfinished submission of ``zipped`` (a run was killed while uploading it)."""
    name = zipped.stem
    credentials = Credentials("ASIA" + name, "secret", "token", expires_at=time.time() + expires_in)
    await SubmissionStore(db).save_submission(
        NewSubmission(f"sub-{name}", "bucket", f"object-{name}", credentials),
        name=zipped.name, sha256=name, path=str(zipped), issued_at=time.time())


async def queue_job(db: Database, bundle: Path) -> None:
    now = time.time()
    await (await JobStore.open(db)).insert(Job(id="queued1", path=bundle, name=None, webhook=None,
                                              skip_preflight=True, state=QUEUED, created_at=now,
                                              updated_at=now))


def prune(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], state: Path,
          work: Path, *args: str) -> str:
    for name in [n for n in os.environ if n.startswith("NOTARYD_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("NOTARYD_STATE_DIR", str(state))
    monkeypatch.setenv("NOTARYD_WORK_DIR", str(work))
    monkeypatch.setenv("NOTARYD_CONFIG", str(state / "absent.toml"))
    (state / "absent.toml").parent.mkdir(parents=True, exist_ok=True)
    (state / "absent.toml").write_text("")
    assert main(["state", "prune", *args]) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def test_prune_removes_only_what_no_unfinished_job_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    state, work = tmp_path / "state", tmp_path / "scratch"
    archives = work / "archives"
    left_over = leave(archives / "Old-0a.zip", 3 * MiB)
    companions = [leave(archives / "Old-0a.zip.tree", 64), leave(archives / "Old-0a.zip.partial", MiB)]
    expired = leave(archives / "Expired-0b.zip", 2 * MiB)
    resumable = leave(archives / "Resume-0c.zip", MiB)
    in_use = leave(archives / "Busy-0d.zip.partial", MiB)
    queued_bundle = tmp_path / "builds" / "Queued.app"
    queued = leave(archive_path_for(queued_bundle, work), MiB)
    in_state_dir = leave(state / "archives" / "Before-0e.zip", MiB)  # from before NOTARYD_WORK_DIR
    not_ours = leave(archives / "notes.txt", 10)
    link = archives / "Link.zip"
    link.symlink_to(resumable)

    async def seed() -> None:
        db = await Database.open(state / "notaryd.sqlite3")
        try:
            await record_submission(db, resumable, expires_in=3600)
            await record_submission(db, expired, expires_in=-60)  # it cannot resume any more
            await queue_job(db, queued_bundle)
        finally:
            await db.close()

    asyncio.run(seed())
    lock = ZipLock(archives / "Busy-0d.zip")  # a run zipping it right now
    lock.acquire()
    try:
        out = prune(monkeypatch, capsys, state, work)
    finally:
        lock.release()

    gone = [left_over, *companions, expired, in_state_dir]
    assert not any(p.exists() for p in gone)
    assert all(p.exists() for p in (resumable, in_use, queued, not_ours)) and link.is_symlink()
    freed = 3 * MiB + 64 + MiB + 2 * MiB + MiB
    assert f"freed {freed / MiB:,.0f} MiB" in out, out
    assert "kept 3" in out, out


def test_prune_older_than_keeps_what_was_written_recently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    state, work = tmp_path / "state", tmp_path / "scratch"
    old = leave(work / "archives" / "Old-01.zip", 2 * MiB, age_seconds=3 * 86400)
    recent = leave(work / "archives" / "New-02.zip", MiB, age_seconds=3600)
    out = prune(monkeypatch, capsys, state, work, "--older-than", "2d")
    assert not old.exists() and recent.exists()
    assert "freed 2 MiB" in out and "kept 1" in out, out
    assert "nothing to remove" in prune(monkeypatch, capsys, state, work, "--older-than", "2d")


def test_prune_refuses_a_duration_it_cannot_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        prune(monkeypatch, capsys, tmp_path / "state", tmp_path / "w", "--older-than", "soon")
    assert exited.value.code == 2
    assert "must be a duration such as 90m, 2h or 5400 (seconds), got 'soon'" in capsys.readouterr().err


async def test_a_zip_removed_under_an_interrupted_run_is_made_again_and_its_upload_resumed(
    emulator: NotaryEmulator, notary_config: NotaryConfig, db: Database, tmp_path: Path
) -> None:
    """Interrupted mid-upload, its zip deleted by hand: the re-run zips the same bytes again
    and resumes the same upload of the same submission (not "changed since the upload began")."""
    app = make_sample_app(tmp_path / "build", "Again")
    make_file(app / "Contents" / "Resources" / "data.bin", 12 * MiB)  # stored: 3 parts
    request = NotarizeRequest(app, skip_preflight=True, staple=False)

    def interrupt(event: Event, /) -> None:
        if isinstance(event, UploadStateChanged) and event.state is UploadState.UPLOADING:
            run.cancel()

    run = asyncio.ensure_future(notarize(db, notary_config, request, [interrupt]))
    with pytest.raises(asyncio.CancelledError):
        await run
    assert emulator.s3.requests[("CreateMultipartUpload", 200)] == 1  # the upload had begun
    zipped = archive_path_for(app, notary_config.state_dir)
    assert zipped.exists()  # an interrupted run keeps its zip, to resume
    zipped.unlink()

    again = await notarize(db, notary_config, request)

    assert again.accepted and emulator.submissions_created == 1
    assert not [op for op, _ in emulator.s3.requests if op == "AbortMultipartUpload"]
    assert emulator.s3.requests[("CreateMultipartUpload", 200)] == 1  # resumed, not restarted
    assert zips_in(notary_config.state_dir) == []
