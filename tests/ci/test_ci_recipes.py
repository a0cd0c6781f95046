"""The GitLab CI and Jenkins recipes of docs/ci.md, run as those systems run them, against the
notary emulator: a shell script with the key as the CI holds it, and notaryd on PATH."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.emulator.config import EmulatorConfig
from service.emulator.notary import BackgroundEmulator
from service.emulator.verdicts import INVALID_MARKER
from tests.support.emulator import notary_settings
from tests.support.files import PART, make_archive

pytestmark = pytest.mark.process

RECIPES = Path(__file__).resolve().parents[2] / "docs" / "ci"


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(processing_delay_seconds=0.2)


class Job:
    """A CI job's world: its working directory, TMPDIR, HOME, and notaryd from the suite's venv."""

    def __init__(self, root: Path, notary: BackgroundEmulator) -> None:
        self.key = notary.call(lambda e: e.make_team_key(root / "keys"))
        assert self.key.path is not None
        self.pem = self.key.path.read_text()
        self.dir, self.tmp, self.home = root / "build", root / "tmp", root / "home"
        for folder in (self.dir, self.tmp, self.home):
            folder.mkdir()
        settings = notary_settings(notary.emulator, self.key)
        del settings["NOTARYD_PRIVATE_KEY"]
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("NOTARYD_", "AWS_"))},
            **settings,
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
            "HOME": str(self.home),
            "TMPDIR": str(self.tmp),
            "NOTARYD_STATE_DIR": str(self.home / "state"),
            # the test archives hold data, no code: preflight would refuse them (nothing to ticket)
            "NOTARYD_CI_ARGS": "--skip-preflight",
        }

    def run(self, script: str, archive: Path, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(RECIPES / script), str(archive)], cwd=self.dir,
                              env={**self.env, **env}, capture_output=True, text=True, timeout=300)

    def results(self) -> dict[str, str]:
        lines = (self.dir / "notary.env").read_text().splitlines()
        return dict(line.split("=", 1) for line in lines)

    def assert_key_left_nothing(self, done: subprocess.CompletedProcess[str], *forms: str) -> None:
        body = [line for line in self.pem.splitlines() if line and not line.startswith("-----")]
        outputs = {"stdout": done.stdout, "stderr": done.stderr}
        for path in [*self.dir.rglob("*"), *self.home.rglob("*")]:
            if path.is_file():
                outputs[str(path)] = path.read_bytes().decode(errors="replace")
        for where, text in outputs.items():
            for form in (*body, *forms):
                assert form not in text, f"the key appears in {where}"
        assert not list(self.tmp.iterdir()), "the private copy of the key was removed"


@pytest.fixture
def job(tmp_path: Path, notary: BackgroundEmulator) -> Job:
    return Job(tmp_path, notary)


def test_gitlab_recipe_accepted_from_a_base64_variable(job: Job) -> None:
    archive = make_archive(job.dir / "Game.zip", PART)
    key_base64 = base64.b64encode(job.pem.encode()).decode()

    done = job.run("gitlab-notarize.sh", archive, NOTARY_KEY_BASE64=key_base64)

    assert done.returncode == 0, done.stderr[-3000:]
    results = job.results()
    assert results["NOTARY_STATUS"] == "Accepted"
    assert Path(results["NOTARY_LOG_PATH"]).is_file()
    assert results["NOTARY_SUBMISSION_ID"] in (job.dir / "notary-result.json").read_text()
    job.assert_key_left_nothing(done, key_base64)


def test_gitlab_recipe_refuses_a_variable_that_is_not_base64(job: Job) -> None:
    archive = make_archive(job.dir / "Game.zip", PART)

    done = job.run("gitlab-notarize.sh", archive, NOTARY_KEY_BASE64="not base64 at all!")

    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("gitlab-notarize: NOTARY_KEY_BASE64 is not base64")
    assert not (job.dir / "notary.env").exists()
    assert not list(job.tmp.iterdir())


def test_jenkins_recipe_invalid_exits_2_from_a_loose_secret_file(job: Job, tmp_path: Path) -> None:
    archive = make_archive(job.dir / "Game.zip", PART, marker=INVALID_MARKER)
    secret_file = tmp_path / "secretFiles" / "AuthKey.p8"  # where withCredentials puts it
    secret_file.parent.mkdir()
    secret_file.write_text(job.pem)
    secret_file.chmod(0o644)  # notaryd alone would refuse it

    done = job.run("jenkins-notarize.sh", archive, NOTARYD_PRIVATE_KEY=str(secret_file),
                   NOTARYD_CI_ARGS="--no-staple --skip-preflight")

    assert done.returncode == 2, done.stderr[-3000:]
    assert job.results()["NOTARY_STATUS"] == "Invalid"
    assert "error: The binary is not signed with a valid Developer ID certificate." in done.stderr
    assert done.stderr.strip().splitlines()[-1] == f"notaryd-ci: {archive}: Invalid"
    job.assert_key_left_nothing(done)
