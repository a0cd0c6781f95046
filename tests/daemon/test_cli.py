"""The `notaryd submit/jobs/job/watch/cancel` client against a real daemon process."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from tests.support.daemon import Daemon, notaryd
from tests.support.ports import closed_port
from tests.support.waiting import until

pytestmark = pytest.mark.process


def test_submit_wait_exits_like_notarize(daemon: Daemon) -> None:
    ok = daemon.cli("submit", str(daemon.archive("App.zip")), "--wait")
    assert ok.returncode == 0, ok.stderr
    job_id = ok.stdout.strip()
    assert daemon.job(job_id)["state"] == "accepted"
    assert "accepted" in ok.stderr and "uploading" in ok.stderr

    invalid = daemon.cli("submit", str(daemon.archive("invalid.zip")), "--wait")
    assert invalid.returncode == 2, invalid.stderr
    assert "The binary is not signed." in invalid.stderr  # the log report is shown

    boom = daemon.cli("submit", str(daemon.archive("boom.zip")), "--wait", "--skip-preflight")
    assert boom.returncode == 1, boom.stderr
    assert "AccessDenied" in boom.stderr


def test_submit_without_wait_prints_the_id_and_jobs_lists_it(daemon: Daemon) -> None:
    result = daemon.cli("submit", str(daemon.archive("App.zip")), "--name", "App.zip")
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip()
    assert len(job_id) == 12
    daemon.wait_for(job_id, "accepted")
    table = daemon.cli("jobs")
    assert table.returncode == 0 and job_id in table.stdout and "accepted" in table.stdout
    listed = json.loads(daemon.cli("jobs", "--json").stdout)
    assert [j["id"] for j in listed] == [job_id]
    one = daemon.cli("job", job_id, "--json")
    assert json.loads(one.stdout)["state"] == "accepted"
    text = daemon.cli("job", job_id)
    assert "state:" in text.stdout and "accepted" in text.stdout


def test_relative_paths_are_made_absolute_by_the_client(daemon: Daemon) -> None:
    daemon.archive("Rel.zip")
    result = subprocess.run(
        [notaryd(), "submit", "Rel.zip"], cwd=daemon.archives, env=daemon.env,
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert daemon.job(result.stdout.strip())["path"] == str(daemon.archives / "Rel.zip")


def test_cancel_and_errors_are_one_line(tmp_path: Path) -> None:
    d = Daemon(tmp_path, env={"FAKE_PARTS": "100", "FAKE_PART_SECONDS": "0.5"}).start()
    try:
        job_id = d.cli("submit", str(d.archive("Slow.zip"))).stdout.strip()
        d.wait_for(job_id, "uploading")
        cancel = d.cli("cancel", job_id)
        assert cancel.returncode == 0 and "cancelled" in cancel.stderr
        again = d.cli("cancel", job_id)
        assert again.returncode == 1 and "already ended" in again.stderr
        missing = d.cli("job", "nope")
        assert missing.returncode == 1 and "no job with id 'nope'" in missing.stderr
        outside = d.cli("submit", "/etc/hostname")
        assert outside.returncode == 1 and "outside the allowed roots" in outside.stderr
        wrong = d.cli("jobs", env={"NOTARYD_API_TOKEN": "wrong"})
        assert wrong.returncode == 1
        assert "refused the API token" in wrong.stderr and len(wrong.stderr.strip().splitlines()) == 1
    finally:
        d.stop()


def test_a_clear_error_when_the_daemon_is_not_running(tmp_path: Path) -> None:
    with closed_port() as port:
        d = Daemon(tmp_path, env={"NOTARYD_API_TOKEN": "t", "NOTARYD_LISTEN": f"127.0.0.1:{port}"})
        result = d.cli("jobs")  # never started
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"notaryd: cannot reach notaryd at 127.0.0.1:{port}: start it with `notaryd serve` "
        "or `notaryd service install`"
    )
    no_token = Daemon(tmp_path / "other").cli("jobs")
    assert no_token.returncode == 1 and "no API token" in no_token.stderr


def test_watch_prints_job_changes_until_interrupted(tmp_path: Path) -> None:
    d = Daemon(tmp_path, env={"FAKE_PARTS": "100", "FAKE_PART_SECONDS": "0.5"}).start()
    watch = subprocess.Popen(
        [notaryd(), "watch"], env=d.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert watch.stdout is not None
    printed: list[str] = []
    reader = threading.Thread(target=lambda: printed.extend(iter(watch.stdout.readline, "")), daemon=True)
    reader.start()

    def watch_shows(job_id: str, state: str) -> bool:
        return any(line.startswith(f"{job_id} {state} ") for line in list(printed))

    try:
        job = d.submit(d.archive("App.zip"))
        until(lambda: watch_shows(job["id"], "uploading"), within=30, what="watch shows the upload")
        # cancelled after watch printed it uploading: only its event stream can tell it
        assert d.request("DELETE", f"/v1/jobs/{job['id']}")[0] == 200
        until(lambda: watch_shows(job["id"], "cancelled"), within=30, what="watch shows the cancel")
    finally:
        watch.send_signal(signal.SIGINT)
        try:
            _, err = watch.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            watch.kill()
            _, err = watch.communicate()
        reader.join(10)
        d.stop()
    assert watch.returncode == 0, err
    lines = [line for line in printed if line.startswith(job["id"])]
    assert " uploading " in lines[0] and " cancelled " in lines[-1], printed
