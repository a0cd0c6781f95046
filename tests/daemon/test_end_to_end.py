"""`notaryd serve` with the real pipeline against the real notary emulator and SeaweedFS."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from signal import SIGTERM

import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.daemon.pipeline_runner import CANCELLED_REASON
from service.emulator.notary import BackgroundEmulator
from service.emulator.verdicts import INVALID_MARKER
from tests.support.daemon import Daemon
from tests.support.emulator import file_sha256, stored_sha256
from tests.support.waiting import until

MiB = 1024 * 1024


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def uploaded_bytes(d: Daemon) -> float:
    return metric(d.request("GET", "/metrics", token=None)[1], "notaryd_upload_bytes_total")


def starts(log: str) -> list[str]:
    """The daemon log cut into one piece per start (the harness writes ``--- start N``)."""
    return re.split(r"^--- start \d+$", log, flags=re.MULTILINE)[1:]


@pytest.mark.slow
def test_three_archives_survive_three_sigkills_without_duplicate_submissions(
    real_daemon: Daemon, notary: BackgroundEmulator
) -> None:
    d = real_daemon
    # ~20 MiB/s across all jobs: the 3 x 30 MiB take ~4.5 s, long enough to be killed mid-way
    d.env.update({"NOTARYD_MAX_JOBS": "3", "NOTARYD_BANDWIDTH_LIMIT": str(20 * MiB)})
    d.start()
    ids = [d.submit(d.archive(f"Build{i}.zip", 30 * MiB), skip_preflight=True)["id"] for i in range(3)]

    def mid_upload() -> bool:
        """This process has sent bytes (its counter starts at 0: a restored bytes_done is not new)
        and an upload is still unfinished."""
        if uploaded_bytes(d) == 0:
            return False
        jobs = [d.job(job_id) for job_id in ids]
        return any(j["state"] == "uploading" and j["bytes_done"] < j["bytes_total"] for j in jobs)

    kills = []  # per kill: (bytes the killed process had sent, bytes its jobs still had to upload)
    for _ in range(3):
        until(mid_upload, within=60, what="new bytes from this process, an upload unfinished", detail=d.log)
        sent, jobs = uploaded_bytes(d), [d.job(job_id) for job_id in ids]
        d.kill()
        kills.append((sent, sum(j["bytes_total"] - j["bytes_done"] for j in jobs)))
        d.start()
    finished = [d.wait_for(job_id, "accepted", "failed", "invalid", timeout=120) for job_id in ids]
    assert [j["state"] for j in finished] == ["accepted"] * 3, finished
    assert notary.call(lambda e: e.submissions_created) == 3, "a restart created a duplicate submission"
    assert len({j["submission_id"] for j in finished}) == 3
    # every kill landed mid-upload: the killed process had sent bytes of its own, some were left
    assert all(sent > 0 and left > 0 for sent, left in kills), kills
    # and each start after a kill resumed the three jobs, an upload among them
    pieces = starts(d.log())
    assert len(pieces) == 4
    for number, piece in enumerate(pieces[1:], 1):
        resumed = dict(re.findall(r'msg="resuming job" job=(\w+) .*was=(\w+)', piece))
        assert sorted(resumed) == sorted(ids) and "uploading" in resumed.values(), f"start {number}:\n{piece}"
    for job in finished:  # what S3 holds is, byte for byte, the archive that was submitted
        assert stored_sha256(notary, job["submission_id"]) == file_sha256(Path(job["path"]))


def test_metrics_agree_with_the_bytes_uploaded(real_daemon: Daemon) -> None:
    d = real_daemon
    d.start()
    sizes = [12 * MiB, 7 * MiB + 123]
    jobs = [d.submit(d.archive(f"M{i}.zip", size), skip_preflight=True) for i, size in enumerate(sizes)]
    for job in jobs:
        assert d.wait_for(job["id"], "accepted", "failed", timeout=60)["state"] == "accepted"
    _, text = d.request("GET", "/metrics", token=None)
    assert metric(text, "notaryd_upload_bytes_total") == sum(sizes)
    assert metric(text, "notaryd_upload_resent_bytes_total") == 0
    assert metric(text, 'notaryd_jobs_finished_total{outcome="accepted"}') == 2
    assert 'notaryd_jobs{state="accepted"}' not in text  # notaryd_jobs: unfinished jobs only
    requests = {
        (s.labels["endpoint"], s.labels["code"]): s.value
        for family in text_string_to_metric_families(text)
        if family.name == "notaryd_notary_requests"
        for s in family.samples
        if s.name.endswith("_total")
    }
    assert sum(v for (endpoint, code), v in requests.items() if endpoint == "submit" and code.startswith("2")) == 2
    assert any(endpoint == "status" for endpoint, _ in requests), requests
    assert metric(text, 'notaryd_job_duration_seconds_count{outcome="accepted"}') == 2


def test_invalid_through_the_cli_and_its_log(real_daemon: Daemon) -> None:
    d = real_daemon
    d.start()
    archive = d.archive("Broken.zip", 6 * MiB)
    with open(archive, "r+b") as f:
        f.seek(3 * MiB)
        f.write(INVALID_MARKER)
    result = d.cli("submit", str(archive), "--wait", "--skip-preflight")
    assert result.returncode == 2, result.stderr
    job_id = result.stdout.strip()
    status, log = d.request("GET", f"/v1/jobs/{job_id}/log")
    assert status == 200 and log["log"]["status"] == "Invalid" and log["report"]
    assert log["summary"]["status"] == "Invalid"


@pytest.mark.parametrize("how", ["DELETE /v1/jobs/{id}", "notaryd cancel"])
def test_cancel_aborts_the_multipart_upload(real_daemon: Daemon, notary: BackgroundEmulator,
                                            how: str) -> None:
    """The API and the CLI reach the same ``Notarizer.cancel`` and end the same way."""
    d = real_daemon
    d.env["NOTARYD_BANDWIDTH_LIMIT"] = str(4 * MiB)
    d.start()
    job = d.submit(d.archive("Cancel.zip", 40 * MiB), skip_preflight=True)

    until(lambda: uploaded_bytes(d) > 0, within=60, what="parts on the wire", detail=d.log)
    if how == "notaryd cancel":
        result = d.cli("cancel", job["id"])
        assert result.returncode == 0 and f"job {job['id']} cancelled" in result.stderr, result.stderr
        cancelled = d.job(job["id"])
    else:
        status, cancelled = d.request("DELETE", f"/v1/jobs/{job['id']}")
        assert status == 200
    assert cancelled["state"] == "cancelled", cancelled
    aborts = notary.call(lambda e: {k: v for k, v in e.s3.requests.items() if k[0] == "AbortMultipartUpload"})
    assert aborts and all(200 <= code < 300 for _, code in aborts), aborts
    assert "cancelled submission" in d.log() and "upload_aborted=True" in d.log(), d.log()
    # submitting it again starts over cleanly with a new submission and finishes
    d.stop()
    with sqlite3.connect(f"file:{d.state_dir / 'notaryd.sqlite3'}?mode=ro", uri=True) as conn:
        ended = conn.execute("SELECT state, abandoned_reason FROM submissions").fetchall()
    assert ended == [("abandoned", CANCELLED_REASON)], ended
    d.env.pop("NOTARYD_BANDWIDTH_LIMIT")
    d.start()
    again = d.submit(d.archive("Cancel.zip", 6 * MiB), skip_preflight=True)
    assert d.wait_for(again["id"], "accepted", "failed", timeout=60)["state"] == "accepted"
    assert notary.call(lambda e: e.submissions_created) == 2


def test_sigterm_mid_upload_exits_zero_in_the_grace_period_and_resumes(
    real_daemon: Daemon, notary: BackgroundEmulator
) -> None:
    d = real_daemon
    d.env.update({"NOTARYD_BANDWIDTH_LIMIT": str(10 * MiB), "NOTARYD_SHUTDOWN_GRACE": "8"})
    d.start()
    size = 60 * MiB  # 12 parts; 8 are in flight at once (NOTARYD_CONCURRENCY default)
    job = d.submit(d.archive("Term.zip", size), skip_preflight=True)
    d.wait_for(job["id"], "uploading")
    until(lambda: uploaded_bytes(d) > 0, within=60, what="parts on the wire", detail=d.log)
    d.signal(SIGTERM)
    assert d.wait(timeout=60) == 0
    interrupted = d.log()
    assert "job interrupted" in interrupted and "notaryd stopped" in interrupted
    assert "abandoning" not in interrupted  # the parts in flight ended inside the grace period
    d.env.pop("NOTARYD_BANDWIDTH_LIMIT")
    d.start()
    assert d.wait_for(job["id"], "accepted", "failed", timeout=60)["state"] == "accepted"
    assert notary.call(lambda e: e.submissions_created) == 1
    # the parts in flight at SIGTERM were finished and kept: the restart sent only the rest
    _, text = d.request("GET", "/metrics", token=None)
    assert 0 < metric(text, "notaryd_upload_bytes_total") <= size - 5 * MiB


def test_after_a_restart_the_metrics_keep_telling_the_truth(real_daemon: Daemon) -> None:
    """notaryd_jobs holds what is unfinished now, the last success survives the restart (from
    the job store), and process_start_time_seconds shows the restart."""
    d = real_daemon
    d.start()
    job = d.submit(d.archive("Done.zip", 3 * MiB), skip_preflight=True)
    finished = d.wait_for(job["id"], "accepted", "failed", timeout=60)
    assert finished["state"] == "accepted"
    _, before = d.request("GET", "/metrics", token=None)
    d.stop()
    d.start()
    _, after = d.request("GET", "/metrics", token=None)
    families = {f.name: f for f in text_string_to_metric_families(after)}
    assert all(s.value == 0 for s in families["notaryd_jobs"].samples)
    assert metric(after, 'notaryd_jobs_finished_total{outcome="accepted"}') == 0
    last = metric(after, "notaryd_last_success_timestamp_seconds")
    assert last == metric(before, "notaryd_last_success_timestamp_seconds")
    assert abs(last - finished["finished_at"]) < 1  # the job's own end, as the API reports it
    assert metric(after, "process_start_time_seconds") > metric(before, "process_start_time_seconds")
