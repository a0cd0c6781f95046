"""A local user floods the control API: answers may be delayed, jobs never fail.

The daemon runs as a real process limited to 4,096 descriptors (what the launchd plist grants);
a bounded slowloris (5,000 connections that never finish their request head, reopened as soon as
they are dropped) runs for the whole life of a real job against the emulator.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from service.daemon.job_states import JobOutcome
from service.emulator.notary import BackgroundEmulator
from tests.support.daemon import Daemon
from tests.support.emulator import file_sha256, stored_sha256
from tests.support.waiting import until

MiB = 1024 * 1024
SLOWLORIS = Path(__file__).with_name("slowloris.py")
FLOOD_CONNECTIONS = 5000
DESCRIPTORS = 4096


def probe(d: Daemon, path: str, timeout: float = 5.0) -> dict[str, object] | None:
    """GET ``path`` on a new connection; the JSON answer, or None when none came in time."""
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {d.token}"})
        response = conn.getresponse()
        body = response.read()
        return dict(json.loads(body)) if response.status == 200 else None
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()


@pytest.mark.skipif(sys.platform != "linux", reason="prlimit (RLIMIT_NOFILE of another process) is Linux only")
def test_a_slowloris_flood_delays_answers_but_never_fails_a_job(
    real_daemon: Daemon, notary: BackgroundEmulator
) -> None:
    d = real_daemon
    d.nofile = DESCRIPTORS
    d.env["NOTARYD_BANDWIDTH_LIMIT"] = str(3 * MiB)  # ~16 s of upload, all of it under the flood
    d.start()
    token = d.token
    archive = d.archive("Flooded.zip", 48 * MiB)
    flood = subprocess.Popen(
        [sys.executable, str(SLOWLORIS), str(d.port), str(FLOOD_CONNECTIONS), "300"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    answers: list[bool] = []  # whether each /healthz probe under the flood got its answer
    try:
        assert flood.stdout is not None and flood.stdout.readline().strip() == "ready"
        job = None
        for _ in range(20):  # submitted under the flood, like every request of this test
            with contextlib.suppress(OSError, AssertionError):
                job = d.submit(archive, skip_preflight=True)
                break
        assert job is not None, "the job could not be submitted during the flood"
        job_id = job["id"]

        def ended() -> dict[str, object] | None:
            answers.append(probe(d, "/healthz") is not None)
            seen = probe(d, f"/v1/jobs/{job_id}")
            return seen if seen is not None and seen["state"] in set(JobOutcome) else None

        until(ended, within=240, what="the job ended under the flood", detail=lambda: d.log()[-3000:])
    finally:
        try:
            out, _ = flood.communicate(timeout=60)  # closes its stdin: the flood stops itself
        except subprocess.TimeoutExpired:
            flood.kill()
            out, _ = flood.communicate()
    stats = json.loads(out.strip().splitlines()[-1])
    print(f"\nflood: {stats}; /healthz answered {sum(answers)}/{len(answers)}")
    ended_job = d.job(job_id)
    assert ended_job["state"] == "accepted", ended_job
    assert stored_sha256(notary, str(ended_job["submission_id"])) == file_sha256(archive)
    assert notary.call(lambda e: e.submissions_created) == 1
    assert any(answers), "no /healthz probe was answered during the flood"
    assert stats["peak_open"] + stats["connect_errors"] > 0
    assert token == d.token
    d.stop()
    line = next(line for line in d.log().splitlines() if "control API connections" in line)
    print(line)
    guard = {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", line)}
    # more connections than the cap: the guard kept taking new ones in, evicting or refusing some
    assert guard["evicted"] + guard["refused"] > 0, line
    assert guard["accepted"] > FLOOD_CONNECTIONS // 2, line
