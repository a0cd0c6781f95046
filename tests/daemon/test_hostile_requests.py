"""Malformed and hostile requests against a real daemon process: a JSON 4xx, never a 500."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import Daemon


def raw(d: Daemon, request: bytes, timeout: float = 30) -> tuple[int, Any]:
    """Send ``request`` as is; (status, JSON body) of the answer."""
    with socket.create_connection(("127.0.0.1", d.port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"application/json" in head, data[:500]
    return status, json.loads(body)


def http(method: str, path: str, host: str, token: str | None = None, body: bytes = b"") -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (
        f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


def test_a_foreign_host_is_refused_everywhere_dns_rebinding(daemon: Daemon) -> None:
    for path, token in (("/metrics", None), ("/healthz", None), ("/v1/jobs", daemon.token)):
        status, reply = raw(daemon, http("GET", path, "attacker.example:7780", token))
        assert status == 421 and "attacker.example" in reply["error"] and reply["hint"], (path, reply)
    for host in (f"127.0.0.1:{daemon.port}", f"localhost:{daemon.port}", "LOCALHOST.", "[::1]:1", "127.0.0.1"):
        status, _ = raw(daemon, http("GET", "/healthz", host))
        assert status == 200, host
    status, _ = raw(daemon, b"GET /healthz HTTP/1.0\r\n\r\n")  # no Host at all
    assert status == 421


@pytest.mark.process
def test_beyond_loopback_probes_answer_any_host_and_v1_only_the_allowed_names(
    tmp_path: Path,
) -> None:
    d = Daemon(tmp_path, env={"NOTARYD_LISTEN": "0.0.0.0:0",
                              "NOTARYD_ALLOWED_HOSTS": "Notaryd.Build.Example., other.example"})
    d.start()
    scraped_by_name = "build-mac-1.example.internal:7780"  # what prometheus.yml sends
    for path in ("/metrics", "/healthz"):
        with socket.create_connection(("127.0.0.1", d.port), timeout=30) as s:
            s.sendall(http("GET", path, scraped_by_name))
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200"), (path, answer[:300])
    status, reply = raw(d, http("GET", "/v1/jobs", scraped_by_name, d.token))
    assert status == 421 and "NOTARYD_ALLOWED_HOSTS" in reply["hint"]
    for named in ("notaryd.build.example:7780", "OTHER.example"):
        status, reply = raw(d, http("GET", "/v1/jobs", named, d.token))
        assert status == 200, (named, reply)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"[" * 100_000, 413),  # over the 64 KiB body cap
        (b"[" * 60_000, 400),  # deeply nested JSON
        (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, 400),
        (b"\xff\xfe not utf-8", 400),
        (b'"a string"', 400),
        (b'{"path": 5}', 400),
        (b'{"path": "/x", "name": ["a"]}', 400),
        (b'{"path": "/x", "skip_preflight": "yes"}', 400),
        (b'{"path": "/tmp/a\\u0000b.zip"}', 400),
        (b'{"path": "/' + b"a" * 5000 + b'.zip"}', 400),
        (b'{"path": "/x", "webhook": "https://' + b"a" * 3000 + b'"}', 400),
        (b'{"path": "/x", "bogus": 1}', 400),
    ],
)
def test_malformed_bodies_get_a_json_4xx(daemon: Daemon, body: bytes, expected: int) -> None:
    status, reply = raw(daemon, http("POST", "/v1/jobs", "127.0.0.1", daemon.token, body))
    assert status == expected, reply
    assert reply["error"] and "Traceback" not in json.dumps(reply)


def test_long_and_odd_paths_get_a_json_404(daemon: Daemon) -> None:
    for path in ("/" + "a" * 5000, "/v1/jobs/" + "b" * 5000, "/v1/jobs/%00", "/v1/jobs/..%2F..%2Fetc"):
        status, reply = raw(daemon, http("GET", path, "127.0.0.1", daemon.token))
        assert status == 404, (path[:40], reply)
        assert len(reply["error"]) < 400


@pytest.mark.parametrize(
    ("name", "problem"),
    [("a/b", "must not contain '/'"), ("x" * 300, "at most 255"), ("bell\x07", "printable"), ("   ", "printable")],
)
def test_job_names_are_validated_before_a_job_exists(daemon: Daemon, name: str, problem: str) -> None:
    status, reply = daemon.request("POST", "/v1/jobs", {"path": str(daemon.archive("a.zip")), "name": name})
    assert status == 400 and problem in reply["error"], reply
    assert daemon.request("GET", "/v1/jobs")[1]["jobs"] == []


def test_symlinks_and_fifos_are_refused_at_post(daemon: Daemon, tmp_path: Path) -> None:
    secret = tmp_path / "secret.p8"
    secret.write_text("key")
    (daemon.archives / "Link.zip").symlink_to(secret)
    status, reply = daemon.request("POST", "/v1/jobs", {"path": str(daemon.archives / "Link.zip")})
    assert status == 403 and "outside the allowed roots" in reply["error"], reply
    os.mkfifo(daemon.archives / "Pipe.zip")
    status, reply = daemon.request("POST", "/v1/jobs", {"path": str(daemon.archives / "Pipe.zip")})
    assert status == 400 and "FIFO" in reply["error"], reply


def test_a_body_that_never_arrives_times_out_with_408(daemon: Daemon) -> None:
    head = http("POST", "/v1/jobs", "127.0.0.1", daemon.token).replace(b"Content-Length: 0", b"Content-Length: 50")
    status, reply = raw(daemon, head)  # the body is never sent
    assert status == 408 and "did not arrive" in reply["error"]
