"""Never notarise the same build twice, and never answer "already Accepted" for other bytes.

Against the notary emulator and real SeaweedFS: a re-run of a stapled .app/.dmg/.pkg ends at
once, offline; an Accepted but unstapled build goes straight to stapling after one status
check; the hash cache is trusted only for the same ctime; a row in the state database is
confirmed with the service before it is believed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from service.emulator.notary import BackgroundEmulator, NotaryEmulator
from service.emulator.sample_app import make_sample_app
from tests.support.artifacts import make_dmg, make_pkg
from tests.support.emulator import cli_environment, file_sha256, notarize_command
from tests.support.files import PART, make_archive, write_random
from tests.support.notary import notarize
from uploader.artifact import ticket_key_for
from uploader.database import Database
from uploader.events import Event, HashProgress, NotaryStageChanged, UploadStateChanged
from uploader.lifecycle import NotaryStage
from uploader.notary.pipeline import NotarizeOutcome, NotarizeRequest, NotaryConfig
from uploader.staple.check import CheckOutcome, check_staple

GiB = 1024**3
BUILDERS: dict[str, Callable[[Path], Path]] = {
    "app": lambda d: make_sample_app(d, "Game"),
    "dmg": lambda d: make_dmg(d / "Game.dmg"),
    "pkg": lambda d: make_pkg(d / "Game.pkg"),
}


@pytest.fixture(params=sorted(BUILDERS))
def build(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A signed build of each kind (app, dmg, pkg) in ``tmp_path/build``."""
    (tmp_path / "build").mkdir()
    return BUILDERS[request.param](tmp_path / "build")


def traffic(emulator: NotaryEmulator) -> tuple[int, int, int]:
    """(submissions created, S3 requests of any kind, status requests) so far."""
    statuses = sum(n for (endpoint, _), n in emulator.requests.items() if endpoint == "status")
    return emulator.submissions_created, sum(emulator.s3.requests.values()), statuses


def read_so_far() -> int:
    """Bytes this process has read through read(2) and the like (Linux's /proc/self/io)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def landed_sha256(emulator: NotaryEmulator, outcome: NotarizeOutcome) -> str | None:
    """SHA-256 of the bytes the emulator received for ``outcome``'s submission."""
    return emulator.submissions[outcome.submission_id or ""].uploaded_sha256


def nothing_was_read(events: list[Event]) -> bool:
    """No preflight, no hashing or packaging, no upload: the build was not read."""
    return not any(
        isinstance(e, HashProgress | UploadStateChanged)
        or (isinstance(e, NotaryStageChanged)
            and e.stage in (NotaryStage.PREFLIGHT, NotaryStage.HASHING, NotaryStage.UPLOADING))
        for e in events)


# -- #17.2: a stapled build -------------------------------------------------------------------


async def test_a_rerun_on_a_stapled_build_submits_and_uploads_nothing(
    build: Path, emulator: NotaryEmulator, stapling: NotaryConfig, db: Database
) -> None:
    request = NotarizeRequest(build, skip_preflight=True)
    first = await notarize(db, stapling, request)
    assert first.accepted and first.staple is not None and not first.staple.failed, first.staple
    assert check_staple(build).outcome is CheckOutcome.VALID
    before = traffic(emulator)

    events: list[Event] = []
    again = await notarize(db, stapling, request, [events.append])

    assert again.accepted
    assert "already notarised and stapled" in again.report, again.report
    assert again.staple is not None and not again.staple.failed
    assert ticket_key_for(build).record_name in again.staple.text
    assert again.submission_id == first.submission_id  # found in the state database
    # No second submission, no S3 request at all, no status request: checked offline.
    assert traffic(emulator) == before
    assert nothing_was_read(events), events
    assert check_staple(build).outcome is CheckOutcome.VALID


async def test_force_notarises_a_stapled_build_again(
    emulator: NotaryEmulator, stapling: NotaryConfig, db: Database, tmp_path: Path
) -> None:
    pkg = make_pkg(tmp_path / "Game.pkg")
    assert (await notarize(db, stapling, NotarizeRequest(pkg, skip_preflight=True))).accepted
    forced = await notarize(db, stapling, NotarizeRequest(pkg, skip_preflight=True, force=True))
    assert forced.accepted and emulator.submissions_created == 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/io")
async def test_a_stapled_app_with_a_1_gib_file_is_not_read_again(
    emulator: NotaryEmulator, stapling: NotaryConfig, db: Database, tmp_path: Path
) -> None:
    app = make_sample_app(tmp_path / "build", "Big")
    assert (await notarize(db, stapling, NotarizeRequest(app, skip_preflight=True))).accepted
    # A 1 GiB resource (sparse: reads back as zeros) that the stapled signature does not cover.
    os.truncate(app / "Contents" / "Resources" / "readme.txt", GiB)
    before = traffic(emulator)

    events: list[Event] = []
    read_before = read_so_far()
    again = await notarize(db, stapling, NotarizeRequest(app, skip_preflight=False), [events.append])
    read = read_so_far() - read_before

    assert again.accepted and "already notarised and stapled" in again.report
    assert read < 16 * 1024**2, f"read {read} bytes of a 1 GiB build"  # not hashed, not zipped
    assert nothing_was_read(events), events
    assert traffic(emulator) == before
    assert not any((stapling.state_dir / "archives").glob("*.zip"))


# -- #17.2: Accepted, not stapled ---------------------------------------------------------------


async def test_an_accepted_unstapled_build_goes_straight_to_stapling(
    build: Path, emulator: NotaryEmulator, stapling: NotaryConfig, db: Database
) -> None:
    first = await notarize(db, stapling, NotarizeRequest(build, skip_preflight=True, staple=False))
    assert first.accepted and check_staple(build).outcome is CheckOutcome.NOT_STAPLED
    submissions, s3_requests, status_requests = traffic(emulator)

    events: list[Event] = []
    # with preflight, as a CI would run it: the lookup comes before it
    again = await notarize(db, stapling, NotarizeRequest(build), [events.append])

    assert again.accepted and again.submission_id == first.submission_id
    assert "not submitted again" in again.report and ticket_key_for(build).record_name in again.report
    assert again.staple is not None and not again.staple.failed, again.staple
    assert check_staple(build).outcome is CheckOutcome.VALID
    # No submission, no upload; one status request: the stored verdict, confirmed.
    assert traffic(emulator) == (submissions, s3_requests, status_requests + 1)
    assert nothing_was_read(events), events


async def test_a_forged_accepted_row_for_the_signature_is_not_believed(
    emulator: NotaryEmulator, stapling: NotaryConfig, db: Database, tmp_path: Path
) -> None:
    dmg = make_dmg(tmp_path / "Game.dmg")
    forged = str(uuid.uuid4())
    await forge_accepted_row(db, forged, sha256="0" * 64, code=ticket_key_for(dmg).record_name)
    outcome = await notarize(db, stapling, NotarizeRequest(dmg, skip_preflight=True))
    assert outcome.accepted and outcome.submission_id != forged
    assert emulator.submissions_created == 1


# -- #18.3: the hash cache answers only for bytes it has proven --------------------------------


def rewrite_in_place_keeping_mtime(path: Path) -> None:
    """New random bytes of the same size into the same inode, then the old mtime put back."""
    st = os.stat(path)
    with open(path, "r+b") as f:
        write_random(f, st.st_size)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (st.st_ino, st.st_size, st.st_mtime_ns)


async def test_same_size_rewrite_with_mtime_restored_is_submitted_again(
    emulator: NotaryEmulator, notary_config: NotaryConfig, db: Database, tmp_path: Path
) -> None:
    archive = make_archive(tmp_path / "Game.zip", PART + 1234)
    first = await notarize(db, notary_config, NotarizeRequest(archive, skip_preflight=True))
    assert first.accepted
    rewrite_in_place_keeping_mtime(archive)

    again = await notarize(db, notary_config, NotarizeRequest(archive, skip_preflight=True))

    assert again.accepted and again.submission_id != first.submission_id
    assert emulator.submissions_created == 2
    assert landed_sha256(emulator, again) == file_sha256(archive)


async def test_cp_p_of_a_same_size_build_over_the_archive_is_submitted_again(
    emulator: NotaryEmulator, notary_config: NotaryConfig, db: Database, tmp_path: Path
) -> None:
    archive = make_archive(tmp_path / "Game.zip", PART)
    other = make_archive(tmp_path / "Other.zip", PART)
    assert other.stat().st_size == archive.stat().st_size
    first = await notarize(db, notary_config, NotarizeRequest(archive, skip_preflight=True))
    assert first.accepted
    st = archive.stat()
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))  # a reproducible build's fixed mtime
    shutil.copy2(other, archive)  # what `cp -p Other.zip Game.zip` does: same inode, mtime copied
    assert (archive.stat().st_ino, archive.stat().st_mtime_ns) == (st.st_ino, st.st_mtime_ns)

    again = await notarize(db, notary_config, NotarizeRequest(archive, skip_preflight=True))

    assert again.accepted and emulator.submissions_created == 2
    assert landed_sha256(emulator, again) == file_sha256(other)


async def test_force_after_a_rewrite_uploads_the_new_bytes(
    emulator: NotaryEmulator, notary_config: NotaryConfig, db: Database, tmp_path: Path
) -> None:
    archive = make_archive(tmp_path / "Game.zip", 2 * PART)
    assert (await notarize(db, notary_config, NotarizeRequest(archive, skip_preflight=True))).accepted
    rewrite_in_place_keeping_mtime(archive)

    forced = await notarize(db, notary_config, NotarizeRequest(archive, skip_preflight=True, force=True))

    assert forced.accepted and emulator.submissions_created == 2
    assert landed_sha256(emulator, forced) == file_sha256(archive)


async def test_an_unchanged_archive_is_not_hashed_twice(
    emulator: NotaryEmulator, notary_config: NotaryConfig, db: Database, tmp_path: Path
) -> None:
    """The ctime in the cache key costs nothing when nothing was written."""
    archive = make_archive(tmp_path / "Game.zip", PART)
    assert (await notarize(db, notary_config, NotarizeRequest(archive, skip_preflight=True, wait=False))).status
    events: list[Event] = []
    assert (await notarize(db, notary_config, NotarizeRequest(archive, skip_preflight=True), [events.append])).accepted
    assert not any(isinstance(e, HashProgress) for e in events)
    assert emulator.submissions_created == 1


async def forge_accepted_row(db: Database, submission_id: str, *, sha256: str,
                             code: str | None = None) -> None:
    """What a local user with write access to the state database could leave there (dated in
    the future, so that it is always the newest)."""
    await db.execute(
        "INSERT INTO submissions (id, name, sha256, path, bucket, object, access_key_id,"
        " secret_access_key, session_token, credentials_issued_at, credentials_expire_at, state,"
        " notary_status, created_at, updated_at) VALUES (?, 'Game', ?, '/x',"
        " 'b', 'o', 'a', 's', 't', 0, 0, 'done', 'Accepted', 1, 9e9)", (submission_id, sha256))
    if code is not None:
        await db.execute("UPDATE submissions SET code_identity = ? WHERE id = ?",
                         (code, submission_id))


async def test_a_forged_accepted_row_for_the_sha256_is_confirmed_with_the_service(
    emulator: NotaryEmulator, notary_config: NotaryConfig, db: Database, tmp_path: Path
) -> None:
    archive = make_archive(tmp_path / "Game.zip", PART)
    forged = str(uuid.uuid4())
    await forge_accepted_row(db, forged, sha256=hashlib.sha256(archive.read_bytes()).hexdigest())

    outcome = await notarize(db, notary_config, NotarizeRequest(archive, skip_preflight=True))

    assert outcome.accepted and outcome.submission_id != forged
    assert emulator.submissions_created == 1
    # Disproved once, the row is never taken for a verdict again: the real one answers now.
    again = await notarize(db, notary_config, NotarizeRequest(archive, skip_preflight=True))
    assert again.submission_id == outcome.submission_id and "not submitted again" in again.report
    assert emulator.submissions_created == 1


async def test_a_stale_accepted_row_takes_the_service_s_word(
    emulator: NotaryEmulator, notary_config: NotaryConfig, db: Database, tmp_path: Path
) -> None:
    """The row says Accepted, the service says the submission was Invalid: submit again."""
    from service.emulator.verdicts import INVALID_MARKER

    request = NotarizeRequest(make_archive(tmp_path / "Game.zip", PART, marker=INVALID_MARKER),
                              skip_preflight=True)
    first = await notarize(db, notary_config, request)
    assert first.status == "Invalid"
    await db.execute("UPDATE submissions SET notary_status = 'Accepted'")

    again = await notarize(db, notary_config, request)

    assert again.status == "Invalid" and again.submission_id != first.submission_id
    assert emulator.submissions_created == 2


# -- the command line --------------------------------------------------------------------------


@pytest.mark.process
def test_notarize_run_again_on_a_stapled_build_exits_0_at_once(
    build: Path, notary: BackgroundEmulator, tmp_path: Path
) -> None:
    key = notary.call(lambda e: e.make_team_key(tmp_path / "keys"))
    notary.call(lambda e: setattr(e.tickets, "propagation_seconds", 0))
    env = {**cli_environment(notary.emulator, key, tmp_path),
           "NOTARYD_TICKET_URL": notary.emulator.ticket_url}
    command = notarize_command(build, "--skip-preflight")

    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    before = notary.call(traffic)
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    assert again.returncode == 0, again.stderr
    assert "already notarised and stapled" in again.stdout, again.stdout
    assert notary.call(traffic) == before
