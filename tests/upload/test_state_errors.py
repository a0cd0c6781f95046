"""Bad state is one line that loses nothing (issue 10, item 5): a newer or damaged database,
a full disk, a read-only or foreign state directory, a too-open one."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from service.daemon import migrations as daemon_migrations
from service.daemon.job_store import JobStore
from service.serve_lock import holding_serve_lock
from tests.support.privileges import NOBODY, python_unprivileged, run_unprivileged
from uploader.database import CorruptDatabaseError, Database, DiskFullError, StateError
from uploader.migrations import SCHEMA
from uploader.schema import LAYOUT
from uploader.state_dir import StateDirError, prepare

pytestmark = pytest.mark.process


def notaryd_env(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTARYD_", "AWS_"))}
    env.update(NOTARYD_STATE_DIR=str(state), AWS_ACCESS_KEY_ID="AKIAEXAMPLE",
               AWS_SECRET_ACCESS_KEY="example-secret-key-0123456789")
    return env


def notaryd(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A real `notaryd` process on ``state``; `upload` opens the database before any network."""
    return subprocess.run([sys.executable, "-m", "service", *args], env=notaryd_env(state),
                          capture_output=True, text=True, timeout=60)


def upload_args(tmp_path: Path) -> list[str]:
    source = tmp_path / "file.bin"
    source.write_bytes(b"x" * 1024)
    return ["upload", str(source), "--bucket", "b", "--key", "k",
            "--endpoint-url", "http://127.0.0.1:9"]


def assert_one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("notaryd:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


# what `nobody` may not reach (a directory of another user, a folder it cannot enter) only root
# can make
needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="only root can make what another user may not reach "
                                "(CI runs as root)")

async def make_database(path: Path) -> None:
    db = await Database.open(path)
    await db.require(daemon_migrations.SCHEMA)
    await db.execute("INSERT INTO jobs (id, path, state, created_at, updated_at)"
                     " VALUES ('j1', '/x', 'queued', 0, 0)")
    await db.close()


def damage(path: Path) -> bytes:
    """Turn the database's second page (the first table's b-tree) to garbage; the new bytes."""
    damaged = bytearray(path.read_bytes())
    damaged[4096:8192] = b"\xa5" * 4096
    path.write_bytes(bytes(damaged))
    return bytes(damaged)


async def damaged_database(tmp_path: Path) -> tuple[Path, Path, bytes]:
    """A state directory whose database is damaged: (directory, database, its bytes)."""
    state = tmp_path / "state"
    path = state / "notaryd.sqlite3"
    await make_database(path)
    return state, path, damage(path)


async def test_newer_schema_is_refused_with_both_versions(tmp_path: Path) -> None:
    path = tmp_path / "state" / "notaryd.sqlite3"
    await make_database(path)
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {LAYOUT + 7}")
    with pytest.raises(StateError) as raised:
        await Database.open(path)
    message = str(raised.value)
    assert f"schema version {LAYOUT + 7}" in message
    assert f"up to {LAYOUT}" in message and "upgrade notaryd" in message
    with sqlite3.connect(path) as conn:  # untouched: still the newer version, data kept
        assert conn.execute("PRAGMA user_version").fetchone()[0] == LAYOUT + 7
        assert conn.execute("SELECT id FROM jobs").fetchall() == [("j1",)]

    line = assert_one_line(notaryd(path.parent, *upload_args(tmp_path)))
    assert "newer notaryd" in line


@pytest.mark.parametrize("package", ["uploader", "service.daemon"])
async def test_a_package_at_a_newer_schema_is_refused_with_both_versions(
    tmp_path: Path, package: str
) -> None:
    path = tmp_path / "state" / "notaryd.sqlite3"
    await make_database(path)
    known = {"uploader": SCHEMA, "service.daemon": daemon_migrations.SCHEMA}[package].version
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_versions SET version = ? WHERE package = ?",
                     (known + 7, package))
    with pytest.raises(StateError) as raised:
        db = await Database.open(path)
        try:
            await JobStore.open(db)  # the daemon's tables are checked when its store opens
        finally:
            await db.close()
    message = str(raised.value)
    assert f"schema version {known + 7} of {package}" in message
    assert f"up to {known}" in message and "upgrade notaryd" in message
    with sqlite3.connect(path) as conn:  # untouched: still the newer version, data kept
        assert conn.execute("SELECT version FROM schema_versions WHERE package = ?",
                            (package,)).fetchone() == (known + 7,)
        assert conn.execute("SELECT id FROM jobs").fetchall() == [("j1",)]


async def test_corrupt_database_is_reported_and_moved_aside_only_on_request(
    tmp_path: Path,
) -> None:
    state, path, damaged = await damaged_database(tmp_path)

    with pytest.raises(CorruptDatabaseError):
        await Database.open(path)
    line = assert_one_line(notaryd(state, *upload_args(tmp_path)))
    assert str(path) in line and "notaryd state set-aside" in line
    assert path.read_bytes() == damaged  # reported, never moved or rewritten silently

    moved = notaryd(state, "state", "set-aside")
    assert moved.returncode == 0, moved.stderr
    assert not path.exists()
    aside = [p for p in state.iterdir() if p.name.startswith("notaryd.sqlite3.damaged-")]
    assert len(aside) == 1 and aside[0].read_bytes() == damaged
    await (await Database.open(path)).close()  # a fresh one opens
    refused = notaryd(state, "state", "set-aside")  # a healthy database stays
    assert "healthy" in assert_one_line(refused) and path.exists()


async def test_set_aside_waits_for_no_daemon_and_moves_nothing_while_one_serves(
    tmp_path: Path,
) -> None:
    state, path, damaged = await damaged_database(tmp_path)
    with holding_serve_lock(state, busy="held by this test"):  # what `notaryd serve` holds
        refused = notaryd(state, "state", "set-aside")
    assert "stop it first" in assert_one_line(refused)
    assert path.read_bytes() == damaged
    assert not [p for p in state.iterdir() if ".damaged-" in p.name]


async def test_garbage_file_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notaryd.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CorruptDatabaseError, match="set-aside"):
        await Database.open(path)


async def test_disk_full_names_the_disk_and_space_and_keeps_the_cause(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "state" / "notaryd.sqlite3")
    try:
        row = await db.fetchone("PRAGMA page_count")
        assert row is not None
        # SQLite's own limit on pages: a real SQLITE_FULL, as a full disk gives
        await db.execute(f"PRAGMA max_page_count = {int(row[0]) + 2}")
        with pytest.raises(DiskFullError) as raised:
            async with db.transaction() as tx:
                for n in range(200):
                    await tx.execute("INSERT INTO submission_intents (name, sha256, path,"
                                     " started_at) VALUES (?, '', ?, 0)", (f"j{n}", "p" * 4000))
        message = str(raised.value)
        assert "no transaction is active" not in message
        assert "is full" in message and "Free at least" in message and "MiB" in message
        assert "mounted at /" in message
        assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
        assert "full" in str(raised.value.__cause__)
        # the whole transaction was rolled back, and the connection was not left inside it:
        # the next statements work
        assert tuple(await db.fetchone("SELECT COUNT(*) FROM submission_intents") or ()) == (0,)
        await db.execute("PRAGMA max_page_count = 1073741823")
        await db.execute("INSERT INTO submission_intents (name, sha256, path, started_at)"
                         " VALUES ('after', '', 'p', 0)")
        assert tuple(await db.fetchone("SELECT COUNT(*) FROM submission_intents") or ()) == (1,)
    finally:
        await db.close()


def test_too_open_state_dir_is_tightened_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    (state / "logs").mkdir(parents=True)
    (state / "logs" / "a.json").write_text("{}")
    (state / "other").write_text("x")
    outside = tmp_path / "outside"
    outside.write_text("x")
    (state / "link").symlink_to(outside)
    for path, mode in ((state, 0o755), (state / "logs", 0o755), (state / "logs" / "a.json", 0o644),
                       (state / "other", 0o644), (outside, 0o644)):
        os.chmod(path, mode)
    with caplog.at_level(logging.WARNING, logger="notaryd.state"):
        prepare(state)
        prepare(state)  # nothing left to tighten: no second warning
    warnings = [r for r in caplog.records if "tightened permissions of 4 entries" in r.getMessage()]
    assert len(warnings) == 1 and len(caplog.records) == 1
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "logs").stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "logs" / "a.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644  # symlinks are not followed


def test_state_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StateDirError, match="not a directory"):
        prepare(blocker)
    with pytest.raises(StateDirError, match="not a directory"):
        prepare(blocker / "state")


@needs_root
def test_state_dir_of_another_user_is_refused(shared_tmp: Path) -> None:
    """`nobody` pointed at root's state directory: one line, and the directory left as it was."""
    source = shared_tmp / "file.bin"
    source.write_bytes(b"x" * 1024)
    source.chmod(0o644)
    state = shared_tmp / "state"
    state.mkdir(mode=0o700)
    result = run_unprivileged(
        [sys.executable, "-m", "service", "upload", str(source), "--bucket", "b", "--key", "k",
         "--endpoint-url", "http://127.0.0.1:9"], env={**notaryd_env(state), "HOME": str(shared_tmp)})
    line = assert_one_line(result)
    assert line == (f"notaryd: state directory {state} belongs to user id 0, not to you ({NOBODY.pw_uid}); "
                    "set NOTARYD_STATE_DIR to a directory of your own")
    assert list(state.iterdir()) == [] and stat.S_IMODE(state.stat().st_mode) == 0o700


@needs_root
def test_a_config_folder_this_user_cannot_enter_is_one_line(shared_tmp: Path) -> None:
    """The default config file sits in a folder `nobody` may not enter: one line naming it."""
    private = shared_tmp / "private"
    private.mkdir(mode=0o700)
    state = shared_tmp / "state"
    state.mkdir(mode=0o777)
    state.chmod(0o777)
    code = "from service.cli import main; raise SystemExit(main(['history']))"
    result = python_unprivileged(code, env={**notaryd_env(state), "HOME": str(shared_tmp),
                                            "XDG_CONFIG_HOME": str(private), "NOTARYD_CONFIG": ""})
    line = assert_one_line(result)
    assert line.startswith(f"notaryd: {private}/notaryd/config.toml: cannot look for the config file (")
    assert "set NOTARYD_CONFIG" in line


def namespaces_available() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-rm", "true"], capture_output=True).returncode == 0


needs_namespaces = pytest.mark.skipif(
    not namespaces_available(), reason="needs unshare (mount namespaces) for a read-only or full "
    "file system")


def run_on_mount(mount: str, directory: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in a private mount namespace where ``mount`` (a shell command using $0 for
    ``directory``) is in effect; the mount vanishes with the process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTARYD_", "AWS_"))}
    env.update(NOTARYD_STATE_DIR=str(directory / "state"), AWS_ACCESS_KEY_ID="AKIAEXAMPLE",
               AWS_SECRET_ACCESS_KEY="example-secret-key-0123456789")
    return subprocess.run(["unshare", "-rm", "sh", "-c", f'{mount} && exec "$@"', str(directory),
                           *argv], env=env, capture_output=True, text=True, timeout=60)


@needs_namespaces
def test_read_only_state_dir_says_so(tmp_path: Path) -> None:
    asyncio.run(make_database(tmp_path / "state" / "notaryd.sqlite3"))
    result = run_on_mount('mount --bind -o ro "$0" "$0"', tmp_path,
                          sys.executable, "-m", "service", *upload_args(tmp_path))
    line = assert_one_line(result)
    assert str(tmp_path / "state") in line and "read-only" in line


@needs_namespaces
def test_really_full_disk_names_the_mount_and_the_space(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    source = upload_args(tmp_path)
    result = run_on_mount('mount -t tmpfs -o size=24k tmpfs "$0"', disk,
                          sys.executable, "-m", "service", *source)
    line = assert_one_line(result)
    assert f"the disk mounted at {disk}" in line and "is full" in line
    assert "Free at least 64 MiB" in line and "no transaction is active" not in line

    script = ("import sys; from pathlib import Path; from uploader.state_dir import write_private;"
              "write_private(Path(sys.argv[1]) / 'logs' / 'a.json', b'x' * (2 << 20))")
    result = run_on_mount('mount -t tmpfs -o size=1m tmpfs "$0"', disk,
                          sys.executable, "-c", f"{script}", str(disk))
    assert result.returncode == 1 and "StateDirError" in result.stderr
    assert f"the disk mounted at {disk}" in result.stderr and "Free at least 2 MiB" in result.stderr


def test_symlinked_state_dir_of_ones_own_is_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    real = tmp_path / "disk" / "notaryd"
    real.mkdir(parents=True, mode=0o755)
    os.chmod(real, 0o755)
    link = tmp_path / "state"
    link.symlink_to(real)
    with caplog.at_level(logging.WARNING, logger="notaryd.state"):
        prepare(link)
        prepare(link)
    assert stat.S_IMODE(real.stat().st_mode) == 0o700
    assert len(caplog.records) == 1  # tightened once, not on every start
