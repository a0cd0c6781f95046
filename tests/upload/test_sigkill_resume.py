"""SIGKILL a real `notaryd upload` process at random moments, re-run it, and check the result."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from service.emulator.seaweed import SeaweedServer
from tests.support.files import PART, make_file
from tests.support.waiting import until

from .helpers import sha256_of_file, stored_sha256

pytestmark = pytest.mark.process

CONCURRENCY = 4


def notaryd() -> list[str]:
    return [sys.executable, "-m", "service"]


def environment(seaweed: SeaweedServer, state_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTARYD_", "AWS_"))}
    env.update(
        HOME=str(state_dir),  # no user config file can leak in
        AWS_ACCESS_KEY_ID=seaweed.access_key,
        AWS_SECRET_ACCESS_KEY=seaweed.secret_key,
        NOTARYD_STATE_DIR=str(state_dir),
        NOTARYD_PART_SIZE=str(PART),
        NOTARYD_CONCURRENCY=str(CONCURRENCY),
        NOTARYD_STALL_TIMEOUT="10",
    )
    return env


def parts_done(db_path: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM parts WHERE state = 'done'").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet (still hashing)
        return 0


def resent_upper_bound(db_path: Path) -> int:
    """Bytes sent more than once: every attempt after a part's first, at full part length."""
    with sqlite3.connect(db_path) as conn:
        row = conn.execute("SELECT COALESCE(SUM((attempts - 1) * length), 0) FROM parts"
                           " WHERE attempts > 1").fetchone()
    return int(row[0])


def kill_point(proc: subprocess.Popen[bytes], database: Path, target: int) -> bool:
    """Whether ``target`` parts are done (0: the state database exists), or the run is over."""
    if proc.poll() is not None:
        return True
    return database.exists() if target == 0 else parts_done(database) >= target


def test_five_sigkills_then_resume_gives_the_exact_bytes(
    seaweed: SeaweedServer, bucket: str, tmp_path: Path
) -> None:
    total_parts = 81
    source = make_file(tmp_path / "build.zip", 80 * PART + 777)
    state = tmp_path / "state"
    command = [*notaryd(), "upload", str(source), "--bucket", bucket, "--key", "game/build.zip",
               "--endpoint-url", seaweed.endpoint_url]
    env = environment(seaweed, state)
    rng = random.Random(20261128)
    database = state / "notaryd.sqlite3"
    # The first kill lands at start-up, the others at random points of the upload.
    targets = [0, *sorted(rng.sample(range(5, total_parts - 5), 4))]
    kills = 0
    for target in targets:
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            until(lambda p=proc, t=target: kill_point(p, database, t), within=60, what=f"{target} parts done")
            if proc.poll() is not None:
                break  # finished before we could kill it
            proc.send_signal(signal.SIGKILL)
            kills += 1
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    final = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    assert "uploaded" in final.stdout
    assert stored_sha256(seaweed, bucket, "game/build.zip") == sha256_of_file(source)
    assert kills == 5, "the upload finished too fast to be interrupted; grow the file"
    assert resent_upper_bound(state / "notaryd.sqlite3") <= kills * (CONCURRENCY + 1) * PART


def test_failure_exits_non_zero_with_one_clear_line(tmp_path: Path, seaweed: SeaweedServer) -> None:
    result = subprocess.run(
        [*notaryd(), "upload", str(tmp_path / "missing.zip"), "--bucket", "b", "--key", "k"],
        env=environment(seaweed, tmp_path), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "missing.zip: no such file" in lines[0]
