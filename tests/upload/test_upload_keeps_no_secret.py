"""`notaryd upload` keeps the user's own AWS keys out of the state directory: they are read from
the environment on every run, and a re-run resumes from the committed parts without them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from service.emulator.seaweed import SeaweedServer
from tests.support.files import PART, make_file

from .test_sigkill_resume import environment, notaryd

pytestmark = pytest.mark.process


def test_the_users_keys_are_never_stored(seaweed: SeaweedServer, bucket: str,
                                         tmp_path: Path) -> None:
    source = make_file(tmp_path / "build.zip", 2 * PART + 5)
    state = tmp_path / "state"
    command = [*notaryd(), "upload", str(source), "--bucket", bucket, "--key", "build.zip",
               "--endpoint-url", seaweed.endpoint_url]
    env = environment(seaweed, state)
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "(resumed)" in again.stdout, again.stderr

    files = [path for path in state.rglob("*") if path.is_file()]
    assert any(path.name == "notaryd.sqlite3" for path in files)
    for path in files:
        assert seaweed.secret_key.encode() not in path.read_bytes(), path
