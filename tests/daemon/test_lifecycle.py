"""Signals and restarts of a real daemon process (scripted pipeline)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.daemon import FAKE_SERVE, Daemon, notaryd
from tests.support.waiting import until

pytestmark = pytest.mark.process


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_lets_parts_finish_then_exits_zero_and_the_job_resumes(tmp_path: Path, sig: int) -> None:
    d = Daemon(tmp_path, env={"FAKE_PARTS": "6", "FAKE_PART_SECONDS": "1.0", "NOTARYD_SHUTDOWN_GRACE": "30"})
    try:
        d.start()
        job = d.submit(d.archive("App.zip"))
        until(lambda: d.job(job["id"])["bytes_done"] > 0, within=30, what="parts on the wire")
        d.signal(sig)
        assert d.wait(timeout=60) == 0
        assert d.manager is not None and {"STOPPING": "1", "STATUS": "draining jobs"} in d.manager.drain()
        log = d.log()
        assert "msg=stopping" in log and "notaryd stopped" in log
        # the parts in flight finished inside the grace period: none was abandoned, it waited
        assert "abandoning" not in log
        waited = re.search(r"msg=\"stopping jobs\".* waited_seconds=([0-9.]+)", log)
        assert waited and float(waited.group(1)) > 0, log

        d.env.update({"FAKE_PART_SECONDS": "0.05"})
        d.start()
        assert "resumed_jobs=1" in d.log()  # logged before READY; the first start had resumed_jobs=0
        assert d.wait_for(job["id"], "accepted")["bytes_done"] > 0
    finally:
        d.stop()


def test_slow_parts_are_abandoned_after_the_grace_period(tmp_path: Path) -> None:
    d = Daemon(tmp_path, env={"FAKE_PARTS": "4", "FAKE_PART_SECONDS": "600", "NOTARYD_SHUTDOWN_GRACE": "1"})
    try:
        d.start()
        job = d.submit(d.archive("App.zip"))
        d.wait_for(job["id"], "uploading")
        d.signal(signal.SIGTERM)
        assert d.wait(timeout=60) == 0  # long before a 600 s part could end
        assert "abandoning parts in flight" in d.log()
    finally:
        d.stop()


def test_sigkill_then_restart_resumes_unfinished_jobs(tmp_path: Path) -> None:
    d = Daemon(tmp_path, env={"FAKE_PARTS": "20", "FAKE_PART_SECONDS": "0.5"})
    try:
        d.start()
        jobs = [d.submit(d.archive(f"App{i}.zip")) for i in range(3)]
        d.wait_for(jobs[0]["id"], "uploading")
        d.kill()
        d.env.update({"FAKE_PART_SECONDS": "0.02"})
        d.start()
        for job in jobs:
            assert d.wait_for(job["id"], "accepted", "failed")["state"] == "accepted"
    finally:
        d.stop()


def test_a_second_daemon_on_the_same_port_says_so(daemon: Daemon, tmp_path: Path) -> None:
    env = {**daemon.env, "NOTARYD_STATE_DIR": str(tmp_path / "second")}
    result = subprocess.run([sys.executable, str(FAKE_SERVE)], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{daemon.port}: the address is in use" in result.stderr


def test_one_daemon_per_state_directory(daemon: Daemon) -> None:
    env = {**daemon.env, "NOTARYD_LISTEN": "127.0.0.1:0"}
    result = subprocess.run([sys.executable, str(FAKE_SERVE)], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "another notaryd is already serving the state directory" in result.stderr


def test_serve_without_an_api_key_says_what_to_set(tmp_path: Path) -> None:
    d = Daemon(tmp_path, fake=False)
    result = subprocess.run([notaryd(), "serve"], env=d.env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("notaryd: App Store Connect API key not configured") and "NOTARYD_KEY_ID" in last
