"""`notaryd notarize` as a real process: SIGKILLed at every stage, exit codes, error lines."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from service.emulator.auth import TeamKey
from service.emulator.config import EmulatorConfig
from service.emulator.notary import BackgroundEmulator
from service.emulator.s3front import PUT_OBJECT_ONLY
from service.emulator.verdicts import INVALID_MARKER
from tests.support.emulator import cli_environment, file_sha256, notarize_command, stored_sha256
from tests.support.files import PART, make_archive
from tests.support.waiting import until

pytestmark = pytest.mark.process


PARTS_DONE = "SELECT COUNT(*) FROM parts WHERE state = 'done'"


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(processing_delay_seconds=3.0)  # time to be killed while waiting


@pytest.fixture
def key(notary: BackgroundEmulator, tmp_path: Path) -> TeamKey:
    return notary.call(lambda e: e.make_team_key(tmp_path / "keys"))


def query(db: Path, sql: str) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            row = conn.execute(sql).fetchone()
            return int(row[0]) if row and row[0] is not None else 0
    except sqlite3.OperationalError:
        return 0


def sigkill_when(archive: Path, env: dict[str, str], ready: Callable[[], object],
                 stage: str) -> bool:
    """Run `notaryd notarize`, SIGKILL it once ``ready()``; False if it was already gone."""
    proc = subprocess.Popen(notarize_command(archive), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        until(lambda: ready() or proc.poll() is not None, within=120, what=f"the '{stage}' stage")
        if proc.poll() is not None:
            return False
        proc.send_signal(signal.SIGKILL)
        return True
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def finishes_accepted_with_one_submission(
    notary: BackgroundEmulator, archive: Path, env: dict[str, str]
) -> None:
    final = subprocess.run(notarize_command(archive), env=env, capture_output=True, text=True,
                           timeout=300)
    assert final.returncode == 0, final.stderr
    assert "Accepted" in final.stdout
    assert notary.call(lambda e: e.submissions_created) == 1
    [submission_id] = notary.call(lambda e: list(e.submissions))
    assert stored_sha256(notary, submission_id) == file_sha256(archive)


def test_sigkilled_at_every_stage_ends_accepted_with_one_submission(
    notary: BackgroundEmulator, key: TeamKey, tmp_path: Path
) -> None:
    archive = make_archive(tmp_path / "Game.zip", 60 * PART)
    env = cli_environment(notary.emulator, key, tmp_path)
    db = tmp_path / "state" / "notaryd.sqlite3"
    uploaded = "SELECT COUNT(*) FROM submissions WHERE state = 'uploaded'"
    answered: list[int] = []  # the emulator's count of authenticated requests when a run began

    def polled_again() -> bool:
        count = notary.call(lambda e: e.token_stats.accepted)
        answered.append(count)
        return count > answered[0]

    # (what to wait for before the kill, a description for failure messages)
    stages: list[tuple[Callable[[], object], str]] = [
        (db.exists, "start-up"),
        (lambda: query(db, PARTS_DONE) >= 10, "uploading, early"),
        (lambda: query(db, PARTS_DONE) >= 40, "uploading, late"),
        (lambda: query(db, uploaded) >= 1, "waiting"),
        (polled_again, "waiting again"),
    ]
    kills = [stage for ready, stage in stages if sigkill_when(archive, env, ready, stage)]
    assert len(kills) == 5
    finishes_accepted_with_one_submission(notary, archive, env)


def test_invalid_exits_2_with_the_issues_printed(
    notary: BackgroundEmulator, key: TeamKey, tmp_path: Path
) -> None:
    archive = make_archive(tmp_path / "Broken.zip", PART, marker=INVALID_MARKER)
    result = subprocess.run(notarize_command(archive),
                            env=cli_environment(notary.emulator, key, tmp_path),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "hardened runtime" in result.stdout


def test_wrong_key_id_exits_1_naming_key_and_issuer(
    notary: BackgroundEmulator, key: TeamKey, tmp_path: Path
) -> None:
    env = cli_environment(notary.emulator, key, tmp_path)
    env["NOTARYD_KEY_ID"] = "ZZZZZZZZZZ"
    archive = make_archive(tmp_path / "Game.zip", PART)
    result = subprocess.run(notarize_command(archive), env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert "ZZZZZZZZZZ" in last and key.issuer_id in last


def test_missing_credentials_say_which_variable(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTARYD_")}
    env["HOME"] = str(tmp_path)
    archive = make_archive(tmp_path / "Game.zip", 1024)
    result = subprocess.run(notarize_command(archive), env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1
    assert "NOTARYD_KEY_ID" in result.stderr and "NOTARYD_PRIVATE_KEY" in result.stderr


def test_status_log_and_history_show_the_services_view(
    notary: BackgroundEmulator, key: TeamKey, tmp_path: Path
) -> None:
    import json

    env = cli_environment(notary.emulator, key, tmp_path)
    archive = make_archive(tmp_path / "Game.zip", PART)
    done = subprocess.run(notarize_command(archive, "--json"), env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    submission_id = json.loads(done.stdout)["submission_id"]

    def notaryd(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "service", *args], env=env,
                              capture_output=True, text=True, timeout=60)

    status = json.loads(notaryd("status", submission_id.upper(), "--json").stdout)
    assert status["id"] == submission_id and status["status"] == "Accepted"
    history = json.loads(notaryd("history", "--json").stdout)
    assert [item["id"] for item in history] == [submission_id]
    log = notaryd("log", submission_id)
    assert log.returncode == 0 and "Accepted" in log.stdout and "log saved to" in log.stdout
    assert json.loads(notaryd("log", submission_id, "--json").stdout)["jobId"].lower() == submission_id
    unknown = notaryd("status", "00000000-0000-0000-0000-000000000000")
    assert unknown.returncode == 1 and len(unknown.stderr.strip().splitlines()) == 1


def test_killed_three_times_under_put_object_only_credentials_ends_accepted(
    notary: BackgroundEmulator, key: TeamKey, tmp_path: Path
) -> None:
    """Credentials that allow only the PutObject family (no ListParts, Abort, Head, Get)."""
    notary.call(lambda e: setattr(e.s3, "denied_operations", PUT_OBJECT_ONLY))
    archive = make_archive(tmp_path / "Game.zip", 60 * PART)
    env = cli_environment(notary.emulator, key, tmp_path)
    db = tmp_path / "state" / "notaryd.sqlite3"
    # Every attempt after a part's first, at full length: an upper bound of the bytes re-sent.
    resent = "SELECT COALESCE(SUM((attempts - 1) * length), 0) FROM parts WHERE attempts > 1"
    kills = 0
    for target in (10, 25, 40):
        kills += sigkill_when(archive, env, lambda t=target: query(db, PARTS_DONE) >= t,  # type: ignore[misc]
                              f"{target} parts done")
    assert kills == 3
    finishes_accepted_with_one_submission(notary, archive, env)
    concurrency = int(env["NOTARYD_CONCURRENCY"])
    assert query(db, resent) <= kills * (concurrency + 1) * PART
    counts = notary.call(lambda e: dict(e.s3.requests))
    assert not any(op == "AbortMultipartUpload" for op, _ in counts)
    assert counts.get(("ListParts", 403), 0) == kills  # tried once per resume, then done without
