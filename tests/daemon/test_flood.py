"""A local user floods the control API: answers may be delayed, jobs never fail.

The daemon runs as a real process limited to 4,096 descriptors (what the launchd plist grants);
a bounded slowloris (5,000 connections that never finish their request head, reopened as soon as
they are dropped) runs for the whole life of a real job against the emulator.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from service.emulator.notary import BackgroundEmulator
from tests.support.daemon import Daemon
from tests.support.emulator import file_sha256, stored_sha256

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
    try:
        assert flood.stdout is not None and flood.stdout.readline().strip() == "ready"
        started = time.monotonic()
        job = None
        for _ in range(20):  # submitted under the flood, like every request of this test
            with contextlib.suppress(OSError, AssertionError):
                job = d.submit(archive, skip_preflight=True)
                break
        assert job is not None, "the job could not be submitted during the flood"
        probes = answered = 0
        state = "queued"
        deadline = started + 240
        while state not in {"accepted", "invalid", "rejected", "failed", "cancelled"}:
            assert time.monotonic() < deadline, f"job still {state}:\n{d.log()[-3000:]}"
            probes += 1
            if probe(d, "/healthz") is not None:
                answered += 1
            seen = probe(d, f"/v1/jobs/{job['id']}")
            if seen is not None:
                state = str(seen["state"])
            time.sleep(0.2)
        job_seconds = time.monotonic() - started
    finally:
        try:
            out, _ = flood.communicate(timeout=60)  # closes its stdin: the flood stops itself
        except subprocess.TimeoutExpired:
            flood.kill()
            out, _ = flood.communicate()
    stats = json.loads(out.strip().splitlines()[-1])
    print(f"\nflood: {stats}; /healthz answered {answered}/{probes}; job ended {state} "
          f"{job_seconds:.1f} s after the flood was in full swing")
    ended = d.job(job["id"])
    assert ended["state"] == "accepted", ended
    assert stored_sha256(notary, str(ended["submission_id"])) == file_sha256(archive)
    assert notary.call(lambda e: e.submissions_created) == 1
    assert answered * 2 >= probes, f"{answered}/{probes} /healthz probes answered"
    assert stats["peak_open"] + stats["connect_errors"] > 0
    assert token == d.token
    d.stop()
    print(next(line for line in d.log().splitlines() if "control API connections" in line))
