"""The control API of a real daemon process on loopback (scripted pipeline)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from service.daemon.api import make_app, routes
from service.daemon.broker import Broker
from service.daemon.metrics import DaemonMetrics
from tests.support.daemon import Daemon

pytestmark = pytest.mark.process


def registered_routes() -> list[tuple[str, str]]:
    """The routes exactly as the daemon registers them (the objects are never used)."""
    from service.daemon.api_context import ApiConfig

    app = make_app(
        scheduler=None,  # type: ignore[arg-type]
        metrics_=DaemonMetrics(),
        broker=Broker(),
        config=ApiConfig(token="t", token_hint="", allowed_roots=(), version="0"),
    )
    return routes(app)


def test_every_v1_route_refuses_a_missing_or_wrong_token(daemon: Daemon) -> None:
    v1 = [(m, p) for m, p in registered_routes() if p.startswith("/v1")]
    assert len(v1) == 10  # 7, and the live page's login links, cancel by POST, resume
    for method, template in [*v1, ("GET", "/v1/no-such-route"), ("GET", "/v1")]:
        path = template.replace("{id}", "0123456789ab")
        body = {"path": str(daemon.archive("a.zip"))} if method == "POST" else None
        for token in (None, "wrong-token", ""):
            status, reply = daemon.request(method, path, body, token=token)
            assert status == 401, (method, path, token, reply)
            assert "token" in reply["error"] and reply["hint"]
    assert daemon.request("GET", "/v1/jobs")[0] == 200
    # the unauthenticated two
    assert daemon.request("GET", "/healthz", token=None)[0] == 200
    status, text = daemon.request("GET", "/metrics", token=None)
    assert status == 200 and "notaryd_upload_bytes_total" in text


def test_the_token_file_is_private_and_survives_restarts(daemon: Daemon) -> None:
    token_file = daemon.state_dir / "api-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    first = daemon.token
    daemon.stop()
    daemon.start()
    assert daemon.token == first


def test_an_explicit_token_wins_over_the_file(tmp_path: Path) -> None:
    d = Daemon(tmp_path, env={"NOTARYD_API_TOKEN": "s3cret-token"}).start()
    try:
        assert d.request("GET", "/v1/jobs", token="s3cret-token")[0] == 200
        assert not (d.state_dir / "api-token").exists()
        assert "s3cret-token" not in d.log()
    finally:
        d.stop()


def test_paths_are_checked_before_anything_is_queued(daemon: Daemon, tmp_path: Path) -> None:
    outside = tmp_path / "outside.zip"
    outside.write_bytes(b"x")
    link = daemon.archives / "link.zip"
    link.symlink_to(outside)
    (daemon.archives / "folder").mkdir()
    (daemon.archives / "empty.zip").write_bytes(b"")

    status, reply = daemon.request("POST", "/v1/jobs", {"path": "/etc/passwd"})
    assert status == 403 and str(daemon.archives) in reply["error"] and "NOTARYD_ALLOWED_ROOTS" in reply["hint"]
    status, reply = daemon.request("POST", "/v1/jobs", {"path": str(link)})
    assert status == 403, "a symlink must not lead out of the allowed roots"
    missing = daemon.archives / "missing.zip"
    status, reply = daemon.request("POST", "/v1/jobs", {"path": str(missing)})
    assert status == 400 and str(missing) in reply["error"]
    cases = [
        ({"path": str(daemon.archives / "folder")}, "is a folder, not a .app bundle"),
        ({"path": str(daemon.archives / "empty.zip")}, "empty"),
        ({"path": "relative.zip"}, "absolute"),
        ({}, "'path' is required"),
        ({"path": str(daemon.archive("a.zip")), "colour": "red"}, "unknown field"),
        ({"path": str(daemon.archive("a.zip")), "webhook": "ftp://x"}, "webhook"),
        ({"path": str(daemon.archive("a.zip")), "skip_preflight": "yes"}, "skip_preflight"),
        ([1, 2], "JSON object"),
    ]
    for body, words in cases:
        status, reply = daemon.request("POST", "/v1/jobs", body)
        assert status == 400 and words in reply["error"], (body, reply)
    assert daemon.request("GET", "/v1/jobs")[1]["jobs"] == []


def test_a_job_through_the_api(daemon: Daemon) -> None:
    archive = daemon.archive("App.zip")
    job = daemon.submit(archive, name="App 1.0.zip")
    assert job["state"] == "queued" and job["path"] == str(archive) and job["bytes_total"] == 100_000
    status, reply = daemon.request("POST", "/v1/jobs", {"path": str(archive)})
    assert status == 409 and job["id"] in reply["error"]
    status, reply = daemon.request("GET", f"/v1/jobs/{job['id']}/log")
    assert status == 409 and "still" in reply["error"]
    done = daemon.wait_for(job["id"], "accepted")
    for key in ("id", "path", "name", "state", "bytes_total", "bytes_done", "rate_bytes_per_second",
                "eta_seconds", "submission_id", "notary_status", "error", "created_at", "updated_at",
                "started_at", "finished_at"):
        assert key in done
    assert done["bytes_done"] == done["bytes_total"] and done["notary_status"] == "Accepted"
    assert done["name"] == "App 1.0.zip"
    status, log = daemon.request("GET", f"/v1/jobs/{job['id']}/log")
    assert status == 200 and log["log"]["status"] == "Accepted" and "Accepted" in log["report"]
    assert daemon.request("GET", "/v1/jobs/nope")[0] == 404
    status, reply = daemon.request("DELETE", f"/v1/jobs/{job['id']}")
    assert status == 409 and "already ended" in reply["error"]
    assert [j["id"] for j in daemon.request("GET", "/v1/jobs")[1]["jobs"]] == [job["id"]]


def test_cancel_through_the_api(tmp_path: Path) -> None:
    d = Daemon(tmp_path, env={"FAKE_PARTS": "100", "FAKE_PART_SECONDS": "0.5"}).start()
    try:
        job = d.submit(d.archive("Slow.zip"))
        d.wait_for(job["id"], "uploading")
        status, reply = d.request("DELETE", f"/v1/jobs/{job['id']}")
        assert status == 200 and reply["state"] == "cancelled"
        assert "upload aborted" in d.log()
    finally:
        d.stop()


def test_sse_streams_every_state_and_progress(tmp_path: Path) -> None:
    d = Daemon(tmp_path, env={"FAKE_PARTS": "12", "FAKE_PART_SECONDS": "0.25"}).start()
    try:
        stream = d.events()
        assert next(stream) == ("open", "")
        job = d.submit(d.archive("App.zip"))
        states: list[str] = []
        done: list[int] = []
        for event, data in stream:
            assert event == "job"
            snapshot = json.loads(data)
            assert snapshot["id"] == job["id"]
            states.append(snapshot["state"])
            done.append(snapshot["bytes_done"])
            if snapshot["state"] == "accepted":
                break
        stream.close()
        assert list(dict.fromkeys(states)) == [
            "queued", "preflight", "hashing", "submitting", "uploading", "waiting", "fetching_log", "accepted"
        ]
        assert len({x for x in done if 0 < x < done[-1]}) >= 2, f"progress must move in steps: {done}"
        assert done == sorted(done)
        # a one-job stream of a finished job ends by itself after its final snapshot
        events = list(d.events(f"?job={job['id']}"))
        assert [e for e, _ in events] == ["open", "job"]
        assert json.loads(events[1][1])["state"] == "accepted"
    finally:
        d.stop()


def test_health_and_openapi(daemon: Daemon) -> None:
    status, health = daemon.request("GET", "/healthz", token=None)
    assert status == 200 and health["status"] == "ok"
    status, doc = daemon.request("GET", "/v1/openapi.json")
    assert status == 200 and doc["openapi"] == "3.1.0"


def test_openapi_lists_exactly_the_registered_routes() -> None:
    from service.daemon.openapi import openapi_document

    documented = {
        (method.upper(), path)
        for path, operations in openapi_document("0")["paths"].items()
        for method in operations
    }
    assert documented == set(registered_routes())


def test_state_dir_and_database_are_private(daemon: Daemon) -> None:
    assert stat.S_IMODE(os.stat(daemon.state_dir / "notaryd.sqlite3").st_mode) == 0o600


def test_names_that_are_not_utf8_and_hard_links_are_refused_in_one_line(daemon: Daemon, tmp_path: Path) -> None:
    latin1 = daemon.archive(os.fsdecode(b"caf\xe9.zip"))  # a Latin-1 name: not UTF-8
    status, reply = daemon.request("POST", "/v1/jobs", {"path": str(latin1)})
    assert status == 400, reply
    assert reply["error"] == (f"{daemon.archives}/caf\\xe9.zip: the name is not valid UTF-8; rename it "
                              "(notaryd and the notary service handle only UTF-8 names)")
    status, reply = daemon.request("POST", "/v1/jobs", {"path": f"{daemon.archives}/\ud800.zip"})
    assert status == 400 and "not valid UTF-8" in reply["error"], reply
    outside = tmp_path / "outside.zip"
    outside.write_bytes(os.urandom(1000))
    os.link(outside, daemon.archives / "linked.zip")
    status, reply = daemon.request("POST", "/v1/jobs", {"path": str(daemon.archives / "linked.zip")})
    assert status == 400 and "has 2 hard links" in reply["error"], reply
    assert daemon.request("GET", "/v1/jobs")[1]["jobs"] == []
