"""The job snapshot: one type for the API's JSON, its OpenAPI schema and the CLI's reading of it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import test_utils, web

from service.client.client import DaemonClient
from service.daemon.job_options import JobOptions
from service.daemon.job_states import JOB_STATES, JobOutcome
from service.daemon.jobs import Job
from service.daemon.openapi import openapi_document
from service.daemon.snapshot import BadSnapshot, JobSnapshot
from tests.support.daemon import NOTARYD
from uploader.errors import NotarydError
from uploader.events import (
    HashProgress,
    PartAcknowledged,
    PartRetried,
    RetryReason,
    UploadStateChanged,
)
from uploader.lifecycle import NotaryStage, NotaryStatus, UploadState

# The control API's job fields, in order: a contract (README, CONTRACT.md).
API_FIELDS = [
    "id", "path", "name", "webhook", "skip_preflight", "state", "bytes_total", "bytes_done",
    "bytes_hashed", "rate_bytes_per_second", "eta_seconds", "submission_id", "notary_status",
    "error", "created_at", "updated_at", "started_at", "finished_at", "retries",
    "staple", "force", "keep_archive", "worker",  # worker: issue 22, the fleet
]


def uploading_job() -> Job:
    job = Job(
        id="0123456789ab", path=Path("/archives/App.zip"), name="App.zip", webhook=None,
        skip_preflight=True, state=NotaryStage.UPLOADING, created_at=100.0, updated_at=101.0,
        submission_id="sub-1", notary_status=NotaryStatus.IN_PROGRESS, started_at=100.5,
        options=JobOptions(staple=False, keep_archive=True),
    )
    job.progress(HashProgress("/archives/App.zip", bytes_hashed=2000, bytes_total=2000))
    job.progress(UploadStateChanged("/archives/App.zip", UploadState.UPLOADING, 2000, 0))
    job.progress(PartRetried("/archives/App.zip", 2, RetryReason.STALL, 1))
    job.progress(PartAcknowledged("/archives/App.zip", 1, 500))
    return job


def finished_json() -> dict[str, Any]:
    job = uploading_job()
    job.move_to(JobOutcome.ACCEPTED, now=200.0)
    job.notary_status = NotaryStatus.ACCEPTED
    return job.snapshot().to_json()


def test_a_jobs_json_has_the_api_fields_in_order_and_reads_back_equal() -> None:
    snapshot = uploading_job().snapshot()
    document = snapshot.to_json()
    assert list(document) == API_FIELDS
    assert document["state"] == "uploading" and document["bytes_done"] == 500
    assert document["retries"] == 1
    assert document["notary_status"] == "In Progress"
    assert (document["staple"], document["force"], document["keep_archive"]) == (False, False, True)
    wire = json.loads(json.dumps(document))
    assert JobSnapshot.from_json(wire) == snapshot
    assert not snapshot.terminal and JobSnapshot.from_json(finished_json()).terminal


def test_the_openapi_job_schema_describes_exactly_the_snapshot() -> None:
    schema = openapi_document("0")["components"]["schemas"]["Job"]
    assert list(schema["properties"]) == API_FIELDS
    assert schema["properties"]["state"]["enum"] == [str(state) for state in JOB_STATES]
    json_types = {str: "string", bool: "boolean", int: "integer", float: "number", type(None): "null"}
    for snapshot in (uploading_job().snapshot().to_json(), finished_json()):
        document = json.loads(json.dumps(snapshot))
        assert set(schema["required"]) <= set(document)
        for name, value in document.items():
            allowed = schema["properties"][name]["type"]
            allowed = [allowed] if isinstance(allowed, str) else allowed
            assert json_types[type(value)] in allowed, (name, value, allowed)


def test_unknown_fields_are_ignored_and_later_fields_may_be_missing() -> None:
    document = finished_json()
    for later in ("name", "webhook", "skip_preflight", "bytes_hashed", "retries", "staple", "force",
                  "keep_archive"):
        del document[later]
    document["from_a_newer_daemon"] = {"anything": [1, 2]}
    snapshot = JobSnapshot.from_json(document)
    assert snapshot.state is JobOutcome.ACCEPTED
    assert snapshot.name is None and snapshot.bytes_hashed == 0 and snapshot.options == JobOptions()


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"id": None}, "'id'"),
        ({"bytes_done": "500"}, "'bytes_done'"),
        ({"bytes_total": True}, "'bytes_total'"),
        ({"bytes_total": -1}, "'bytes_total'"),
        ({"bytes_total": 2.5}, "'bytes_total'"),
        ({"rate_bytes_per_second": float("nan")}, "'rate_bytes_per_second'"),
        ({"eta_seconds": float("inf")}, "'eta_seconds'"),
        ({"created_at": [1]}, "'created_at'"),
        ({"state": "exploded"}, "'state'"),
        ({"state": 3}, "'state'"),
        ({"notary_status": {"x": 1}}, "'notary_status'"),
        ({"staple": "yes"}, "'staple'"),
    ],
)
def test_a_wrong_field_is_one_error_naming_it(change: dict[str, Any], named: str) -> None:
    with pytest.raises(BadSnapshot) as caught:
        JobSnapshot.from_json({**finished_json(), **change})
    message = str(caught.value)
    assert named in message and "\n" not in message


def test_a_missing_required_field_or_a_non_object_is_one_error() -> None:
    document = finished_json()
    del document["state"]
    with pytest.raises(BadSnapshot, match="no 'state' field"):
        JobSnapshot.from_json(document)
    for not_a_job in ([finished_json()], "job", None, 3):
        with pytest.raises(BadSnapshot, match="must be a JSON object"):
            JobSnapshot.from_json(not_a_job)


# -- the CLI client against a daemon that answers in another shape -------------------------------


@pytest.fixture
async def hostile_daemon() -> AsyncIterator[str]:
    """A control API on loopback whose every job answer has the wrong shape; yields host:port."""
    bad_job = {**finished_json(), "bytes_done": "lots"}

    async def jobs(_: web.Request) -> web.Response:
        return web.json_response({"jobs": [finished_json(), bad_job]})

    async def job(request: web.Request) -> web.Response:
        if request.match_info["id"] == "notjson":
            return web.Response(text="<html>proxy error</html>", content_type="text/html")
        return web.json_response(bad_job)

    async def submit(_: web.Request) -> web.Response:
        return web.json_response({**finished_json(), "state": "queued"}, status=201)

    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if request.query.get("job") == "huge":
            await response.write(b"event: job\ndata: " + b"x" * (4 * 1024 * 1024) + b"\n\n")
        else:
            await response.write(b"event: job\ndata: [1, 2]\n\n")
        return response

    app = web.Application()
    app.router.add_post("/v1/jobs", submit)
    app.router.add_get("/v1/jobs", jobs)
    app.router.add_get("/v1/jobs/{id}", job)
    app.router.add_get("/v1/events", events)
    async with test_utils.TestServer(app, host="127.0.0.1", port=0) as server:
        yield f"127.0.0.1:{server.port}"


@pytest.mark.integration
async def test_the_client_reports_a_foreign_answer_as_one_clear_error(hostile_daemon: str) -> None:
    async with DaemonClient(hostile_daemon, "token") as client:
        for call in (client.jobs(), client.job("0123456789ab")):
            with pytest.raises(NotarydError) as caught:
                await call
            assert "'bytes_done'" in str(caught.value) and hostile_daemon in str(caught.value)
        with pytest.raises(NotarydError, match="did not return a JSON object"):
            await client.job("notjson")
        with pytest.raises(NotarydError, match="must be a JSON object"):
            async for _ in client.events():
                pass
        with pytest.raises(NotarydError, match="event stream"):
            async for _ in client.events("huge"):
                pass


@pytest.mark.process
async def test_the_cli_shows_a_foreign_answer_in_one_line(hostile_daemon: str, tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "NOTARYD_STATE_DIR": str(tmp_path / "state"),
           "NOTARYD_LISTEN": hostile_daemon, "NOTARYD_API_TOKEN": "t"}
    # submit --wait follows the job's events, and does not keep retrying an answer it cannot read
    for args in (["jobs"], ["job", "0123456789ab", "--json"], ["submit", "/archives/App.zip", "--wait"]):
        process = await asyncio.create_subprocess_exec(
            str(NOTARYD), *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 1, err
        lines = err.decode().strip().splitlines()
        assert "cannot read" in lines[-1] and "Traceback" not in err.decode(), lines
        assert len(lines) == (2 if "--wait" in args else 1), lines  # --wait: the queued line first
        if "--json" in args:  # the error document, on stdout
            assert "cannot read" in json.loads(out)["error"]["message"]
        else:
            assert out == b""
