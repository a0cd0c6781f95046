"""What the daemon's CLI says when things go wrong: one plain line, never an internal."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import zipfile
from pathlib import Path

import pytest

from service.emulator.sample_app import make_sample_app
from tests.support.daemon import Daemon, notaryd
from tests.support.waiting import until

pytestmark = pytest.mark.process


def test_a_busy_port_is_one_address_in_use_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        d = Daemon(tmp_path, env={
            "NOTARYD_API_TOKEN": "t", "NOTARYD_LISTEN": f"127.0.0.1:{port}",
            # set, never used: the daemon stops at the port before any job needs the key
            "NOTARYD_KEY_ID": "ABCDEFGHIJ", "NOTARYD_ISSUER_ID": "69a6de7e-0000-0000-0000-000000000000",
            "NOTARYD_PRIVATE_KEY": str(tmp_path / "AuthKey_ABCDEFGHIJ.p8")})
        result = subprocess.run([notaryd(), "serve"], env=d.env, capture_output=True, text=True,
                                timeout=60)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last == (f"notaryd: cannot listen on 127.0.0.1:{port}: the address is in use; is "
                    "another notaryd running? Stop it or set NOTARYD_LISTEN to another HOST:PORT")
    assert "unexpected error" not in result.stderr


def test_cancel_of_an_unknown_job_gives_its_hint_once(daemon: Daemon) -> None:
    result = daemon.cli("cancel", "nope")
    assert result.returncode == 1
    assert result.stderr.strip() == "notaryd: no job with id 'nope'; `notaryd jobs` lists the known jobs"


def test_ctrl_c_on_submit_wait_leaves_the_job_running_and_says_how_to_follow_it(
    tmp_path: Path
) -> None:
    d = Daemon(tmp_path, env={"FAKE_PARTS": "100", "FAKE_PART_SECONDS": "0.5"}).start()
    try:
        follower = subprocess.Popen([notaryd(), "submit", str(d.archive("Slow.zip")), "--wait"],
                                    env=d.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
        try:
            job_id = until(lambda: next((j["id"] for j in json.loads(
                d.cli("jobs", "--json").stdout) if j["state"] == "uploading"), None),
                within=60, what="the job to upload")
            follower.send_signal(signal.SIGINT)
            _, err = follower.communicate(timeout=30)
        finally:
            if follower.poll() is None:
                follower.kill()
                follower.wait()
        assert follower.returncode == 130
        assert err.strip().splitlines()[-1] == (
            f"notaryd: still running as job {job_id}; follow it with `notaryd watch {job_id}`")
        assert d.job(job_id)["state"] == "uploading"
        followed = subprocess.Popen([notaryd(), "watch", job_id], env=d.env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        until(lambda: d.job(job_id)["state"] == "uploading", within=10, what="the upload")
        assert d.request("DELETE", f"/v1/jobs/{job_id}")[0] == 200
        _, err = followed.communicate(timeout=60)
        assert followed.returncode == 1 and f"job {job_id} cancelled" in err
    finally:
        d.stop()


def test_submit_wait_exits_2_listing_what_preflight_found(
    real_daemon: Daemon, tmp_path: Path
) -> None:
    app = make_sample_app(tmp_path / "build", "Game")  # signed, but not with a Developer ID
    archive = real_daemon.archives / "Game.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(app.rglob("*")):
            if path.is_file() and not path.is_symlink():
                zipped.write(path, path.relative_to(app.parent).as_posix())
    real_daemon.start()
    result = real_daemon.cli("submit", str(archive), "--wait")
    assert result.returncode == 2, result.stderr
    assert "Developer ID" in result.stderr  # the issues are listed
    assert "failed: failed" not in result.stderr
    job_id = result.stdout.strip()
    assert f"notaryd: job {job_id} invalid: " in result.stderr
    assert real_daemon.job(job_id)["submission_id"] is None  # nothing was submitted
