"""The GitHub Action (``action.yml``) run as the runner runs it, against the notary emulator.

The steps run with bash as a runner would (tests/support/actions.py). ``pipx`` is a shim on PATH
that records how it was called and puts the suite's own ``notaryd`` in its bin dir, which the
install step hands to the later steps through ``GITHUB_PATH``.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from service.emulator.config import EmulatorConfig
from service.emulator.faults import Faults
from service.emulator.notary import BackgroundEmulator
from service.emulator.verdicts import INVALID_MARKER
from tests.support.actions import REPOSITORY, Runner, parse_output_file
from tests.support.files import PART, make_archive

pytestmark = pytest.mark.process

@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(processing_delay_seconds=0.2)


@pytest.fixture
def runner(tmp_path: Path, notary: BackgroundEmulator) -> Runner:
    return Runner(tmp_path, notary)


def test_accepted_sets_outputs_summary_and_uses_the_installed_notaryd(runner: Runner) -> None:
    archive = make_archive(runner.workspace / "Game.zip", PART)

    run = runner.run(runner.inputs(archive, runner.pem))

    assert run.code == 0, run.log[-4000:]
    _install, notarize = run.steps
    assert runner.pipx_calls.read_text().splitlines() == [
        f"install --force --python {_python3(runner.env)} {REPOSITORY}",
        "environment --value PIPX_BIN_DIR",
    ]
    outputs = parse_output_file(notarize.outputs_file)
    assert outputs["status"] == "Accepted"
    assert len(outputs["submission-id"]) == 36  # a UUID, as Apple gives
    log_path = Path(outputs["log-path"])
    assert log_path.is_file() and log_path.is_relative_to(runner.home / "state")
    assert run.outputs == outputs  # the action's outputs are the step's
    assert "Accepted" in run.summary.splitlines()[0] and archive.name in run.summary
    assert outputs["submission-id"] in run.summary
    runner.assert_key_never_shown(run, runner.pem)


def test_invalid_exits_2_with_the_grouped_issues_in_the_summary(runner: Runner) -> None:
    archive = make_archive(runner.workspace / "Game.zip", PART, marker=INVALID_MARKER)
    key_base64 = base64.b64encode(runner.pem.encode()).decode()  # how CI secrets often hold it

    run = runner.run(runner.inputs(archive, key_base64, staple="false"))

    assert run.code == 2, run.log[-4000:]
    assert run.outputs["status"] == "Invalid"
    assert run.outputs["submission-id"] and Path(run.outputs["log-path"]).is_file()
    assert "Invalid" in run.summary.splitlines()[0]
    # the emulator's log has the unsigned-binary error at two architectures: one group, two places
    unsigned = "The binary is not signed with a valid Developer ID certificate."
    assert run.summary.count(unsigned) == 1
    assert "App.app/Contents/MacOS/App [x86_64]" in run.summary
    assert "App.app/Contents/MacOS/App [arm64]" in run.summary
    assert "::error::" in run.steps[-1].stdout
    runner.assert_key_never_shown(run, key_base64)


def test_timeout_stops_a_stuck_submission_and_says_so(
    runner: Runner, notary: BackgroundEmulator
) -> None:
    notary.call(lambda e: setattr(e, "faults", Faults(stuck_next=1)))
    archive = make_archive(runner.workspace / "Game.zip", PART)

    run = runner.run(runner.inputs(archive, runner.pem, timeout="1s"))

    assert run.code == 1, run.log[-4000:]
    assert run.outputs["status"] == "timeout"
    assert "timeout" in run.summary and "re-run resumes" in run.summary
    runner.assert_key_never_shown(run, runner.pem)


def test_a_key_that_is_no_key_fails_in_one_line_without_showing_it(runner: Runner) -> None:
    archive = make_archive(runner.workspace / "Game.zip", PART)
    not_a_key = "c2VjcmV0IGJ1dCBub3QgYSBrZXk="  # base64 of text that is no PEM

    run = runner.run(runner.inputs(archive, not_a_key))

    assert run.code == 1
    assert len(run.steps) == 2 and run.outputs["status"] == ""
    assert "::error::the 'key' input decodes from base64, but not to a PEM" in run.steps[-1].stdout
    assert not_a_key in run.masks and not_a_key not in run.log
    assert not list(runner.temp.glob("notaryd-key.*"))


def test_the_key_reaches_notaryd_only_through_its_environment(runner: Runner, tmp_path: Path) -> None:
    """A notaryd stand-in records what NOTARYD_PRIVATE_KEY holds as notaryd would see it: the
    secret itself (no path, no file), and INPUT_KEY gone from its environment."""
    seen = tmp_path / "seen"
    spy = tmp_path / "spy-bin"
    spy.mkdir()
    (spy / "notaryd").write_text(
        "#!/bin/sh\n"
        f"if [ -e \"$NOTARYD_PRIVATE_KEY\" ]; then echo file; else echo text; fi > '{seen}'\n"
        f"printf '%s' \"$NOTARYD_PRIVATE_KEY\" | sha256sum | cut -c1-64 >> '{seen}'\n"
        f"echo \"input-key:${{INPUT_KEY:-unset}}\" >> '{seen}'\n"
        "echo '{\"status\": \"Accepted\", \"submission_id\": \"s\", \"log_path\": null}'\n"
    )
    (spy / "notaryd").chmod(0o755)
    (runner.pipx_bin / "notaryd").unlink()
    (runner.pipx_bin / "notaryd").symlink_to(spy / "notaryd")
    archive = make_archive(runner.workspace / "Game.zip", PART)
    secret = base64.b64encode(runner.pem.encode()).decode()

    run = runner.run(runner.inputs(archive, secret))

    assert run.code == 0, run.log
    assert seen.read_text().split() == ["text", hashlib.sha256(secret.encode()).hexdigest(),
                                        "input-key:unset"]
    written = [p.name for p in runner.temp.iterdir() if not p.name.startswith(("step_", "_runner"))]
    assert written == [], "the key was written nowhere in RUNNER_TEMP"


def _python3(env: dict[str, str]) -> str:
    import shutil

    found = shutil.which("python3", path=env["PATH"])
    assert found is not None
    return found

