"""`notaryd` as a real process: bounded waits that say what they wait for, and machine output."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from service.emulator.config import EmulatorConfig
from service.emulator.notary import BackgroundEmulator
from service.emulator.verdicts import INVALID_MARKER
from tests.support.emulator import cli_environment_with_new_key, notarize_command
from tests.support.files import PART, make_archive
from tests.support.ports import closed_port
from tests.support.waiting import until

pytestmark = pytest.mark.process

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
UNKNOWN_ID = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(processing_delay_seconds=4.0)  # a verdict that takes a while


def run(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def bare_environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTARYD_", "AWS_"))}
    env.update(HOME=str(home), NOTARYD_STATE_DIR=str(home / "state"))
    return env


def test_formats_the_service_does_not_take_are_refused_before_anything_is_read(
    tmp_path: Path
) -> None:
    env = bare_environment(tmp_path)  # no key either: the input is judged first
    tarball = tmp_path / "Game.tar.gz"
    tarball.write_bytes(os.urandom(4096))
    refused = run(env, "notarize", str(tarball), timeout=60)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "notaryd: Game.tar.gz: the notary service does not take this format; it takes .zip, "
        ".pkg and .dmg (and notaryd zips a .app bundle itself): repackage it, e.g. "
        "`ditto -c -k --keepParent YourApp.app YourApp.zip`"]
    assert not (tmp_path / "state").exists()  # nothing hashed, nothing recorded
    as_json = run(env, "notarize", str(tarball), "--json", timeout=60)
    assert as_json.returncode == 1
    error = json.loads(as_json.stdout)["error"]
    assert error["code"] == "unsupported_input"
    assert error["message"] == "Game.tar.gz: the notary service does not take this format"
    assert error["fix"].startswith("it takes .zip, .pkg and .dmg")

    (tmp_path / "Build").mkdir()
    folder = run(env, "notarize", str(tmp_path / "Build"), timeout=60)
    assert folder.returncode == 1 and "Build is a folder, not a .app bundle" in folder.stderr
    (tmp_path / "Game.APP").mkdir()
    upper = run(env, "notarize", str(tmp_path / "Game.APP"), timeout=60)  # a bundle: taken
    assert upper.returncode == 1 and "no such file" not in upper.stderr
    assert "NOTARYD_KEY_ID" in upper.stderr  # it got as far as the missing key


def test_an_archive_without_code_is_refused_before_upload(
    notary: BackgroundEmulator, tmp_path: Path
) -> None:
    env = cli_environment_with_new_key(notary, tmp_path)
    data_only = make_archive(tmp_path / "Assets.zip", PART)
    result = run(env, "notarize", str(data_only))  # preflight runs: no --skip-preflight
    assert result.returncode == 2, result.stderr
    assert "No Mach-O code was found, so there is nothing for the notary service to notarize." \
        in result.stdout
    assert notary.call(lambda e: e.submissions_created) == 0


def test_any_error_with_json_is_an_error_document_on_stdout(tmp_path: Path) -> None:
    result = run(bare_environment(tmp_path), "status", UNKNOWN_ID, "--json", timeout=60)
    assert result.returncode == 1
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "config_error"
    assert error["message"].startswith("App Store Connect API key not configured: set NOTARYD_KEY_ID")
    assert error["fix"].startswith("Create a team key")


def test_ids_the_service_does_not_know_end_at_once_in_one_line(
    notary: BackgroundEmulator, tmp_path: Path
) -> None:
    env = cli_environment_with_new_key(notary, tmp_path)
    for command in ("status", "log", "wait"):
        result = run(env, command, UNKNOWN_ID, timeout=60)  # `log` used to ask for 5 minutes
        assert result.returncode == 1, (command, result.stderr)
        assert result.stderr.strip().splitlines() == [
            f"notaryd: the notary service does not know submission '{UNKNOWN_ID}'; check the "
            "id (`notaryd history` lists your team's submissions)"], command


def test_json_output_is_snake_case_with_rfc3339_times_and_a_staple_object(
    notary: BackgroundEmulator, tmp_path: Path
) -> None:
    env = cli_environment_with_new_key(notary, tmp_path)
    done = run(env, *notarize_command(make_archive(tmp_path / "Game.zip", PART), "--json")[3:])
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["staple"]["outcome"] == "not_stapleable"
    assert "(notaryd staple Game.app)" in outcome["staple"]["message"]
    status = json.loads(run(env, "status", outcome["submission_id"], "--json").stdout)
    assert set(status) == {"id", "name", "status", "created_at"}
    assert RFC3339_UTC.match(status["created_at"]), status
    waited = json.loads(run(env, "wait", outcome["submission_id"], "--json").stdout)
    assert waited == status
    history = json.loads(run(env, "history", "--json").stdout)
    assert history == [status]


def test_timeout_bounds_the_run_says_what_was_left_and_a_rerun_resumes(
    notary: BackgroundEmulator, tmp_path: Path
) -> None:
    env = cli_environment_with_new_key(notary, tmp_path)
    archive = make_archive(tmp_path / "Game.zip", PART)
    # shorter than the emulator's 4 s verdict alone: the run ends before Apple decides
    stopped = run({**env, "NOTARYD_TIMEOUT": "3s"}, *notarize_command(archive)[3:])
    assert stopped.returncode == 1, stderr_of(stopped)
    last = stopped.stderr.strip().splitlines()[-1]
    assert last.startswith("notaryd: gave up after the --timeout of 3s: ")
    assert last.endswith("; run the same command again to resume where it stopped")
    resumed = run(env, *notarize_command(archive, "--timeout", "2m")[3:])
    assert resumed.returncode == 0, stderr_of(resumed)
    assert notary.call(lambda e: e.submissions_created) == 1


def run_with_a_dead_endpoint(notary: BackgroundEmulator, home: Path, setting: str,
                             url: str) -> tuple[int, list[str]]:
    """`notarize --timeout 8s` with ``setting`` pointing at a port nobody answers on: the port
    and the stderr lines."""
    env = cli_environment_with_new_key(notary, home)
    archive = make_archive(home / "Game.zip", PART)
    with closed_port() as port:
        env[setting] = url.format(port=port)
        result = run(env, *notarize_command(archive, "--timeout", "8s")[3:])
    assert result.returncode == 1
    return port, result.stderr.strip().splitlines()


def test_no_network_at_submit_says_what_it_waits_for_until_the_timeout(
    notary: BackgroundEmulator, tmp_path: Path
) -> None:
    port, lines = run_with_a_dead_endpoint(notary, tmp_path, "NOTARYD_API_URL",
                                           "http://127.0.0.1:{port}/notary/v2")
    waiting = [line for line in lines if line.startswith("notaryd: the notary service not answering")]
    assert waiting, "\n".join(lines)
    assert re.fullmatch(
        rf"notaryd: the notary service not answering \(cannot connect to 127.0.0.1:{port}: .+\); "
        r"next (submit attempt|look for a lost submission) in \d+ s", waiting[0]), waiting
    assert lines[-1].startswith("notaryd: gave up after the --timeout of 8s: it was submitting")


def test_s3_unreachable_is_reported_not_silent(notary: BackgroundEmulator, tmp_path: Path) -> None:
    port, lines = run_with_a_dead_endpoint(notary, tmp_path, "NOTARYD_S3_ENDPOINT_URL",
                                           "http://127.0.0.1:{port}")
    assert any(re.fullmatch(rf"notaryd: S3 not answering \(.*127.0.0.1:{port}.*\); next attempt "
                            r"in \d+ s", line) for line in lines), "\n".join(lines)
    assert lines[-1].startswith("notaryd: gave up after the --timeout of 8s: the upload was at "
                                "0 B of 5.0 MiB (submission ")


@pytest.mark.parametrize(("marker", "verdict", "exit_code"),
                         [(b"", "Accepted", 0), (INVALID_MARKER, "Invalid", 2)])
def test_a_second_run_on_the_same_build_waits_for_the_first_and_reports_its_verdict(
    notary: BackgroundEmulator, tmp_path: Path, marker: bytes, verdict: str, exit_code: int
) -> None:
    env = cli_environment_with_new_key(notary, tmp_path)
    archive = make_archive(tmp_path / "Game.zip", PART, marker=marker)
    first = subprocess.Popen(notarize_command(archive, "--json"), env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        locks = tmp_path / "state" / "locks"
        until(lambda: any(p.read_text().strip() == str(first.pid) for p in locks.glob("*.lock"))
              if locks.is_dir() else False, within=60, what="the first run to hold the build's lock")
        second = run(env, *notarize_command(archive, "--json")[3:])
        first_out, first_err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == exit_code, first_err
    assert second.returncode == exit_code, second.stderr
    assert (f"notaryd: another notaryd (pid {first.pid}) is notarising this build; waiting for it"
            in second.stderr.splitlines())
    one, two = json.loads(first_out), json.loads(second.stdout)
    assert (one["status"], two["status"]) == (verdict, verdict)
    assert one["submission_id"] == two["submission_id"]
    assert notary.call(lambda e: e.submissions_created) == 1


def stderr_of(result: subprocess.CompletedProcess[str]) -> str:
    return result.stderr[-3000:]
