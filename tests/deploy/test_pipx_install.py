"""The README's install line, `pipx install ./notaryd` from a clone, run as written: the clone
installs, and the installed `notaryd` has its commands (completion, credentials, info)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.process, pytest.mark.slow]

REPOSITORY = Path(__file__).resolve().parents[2]
README_LINE = "git clone <this repository> notaryd && pipx install ./notaryd"


def test_pipx_installs_notaryd_from_a_clone(tmp_path: Path) -> None:
    assert README_LINE in (REPOSITORY / "README.md").read_text()
    pipx = shutil.which("pipx")
    if pipx is None:
        pytest.skip("pipx missing: run scripts/install-system-deps.sh")
    env = {**os.environ, "PIPX_HOME": str(tmp_path / "pipx"),
           "PIPX_BIN_DIR": str(tmp_path / "bin"), "PIPX_MAN_DIR": str(tmp_path / "man")}
    cloned = subprocess.run(["git", "clone", "--quiet", str(REPOSITORY), "notaryd"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert cloned.returncode == 0, cloned.stderr

    installed = subprocess.run([pipx, "install", "./notaryd"], cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=900)

    assert installed.returncode == 0, (installed.stdout + installed.stderr)[-3000:]
    notaryd = tmp_path / "bin" / "notaryd"
    completion = subprocess.run([str(notaryd), "completion", "bash"], env=env,
                                capture_output=True, text=True, timeout=60)
    assert completion.returncode == 0, completion.stderr
    assert "credentials" in completion.stdout and " info " in completion.stdout
    listed = subprocess.run([str(notaryd), "credentials", "list", "--json"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == ["{", '"profiles":', "[]", "}"]
