"""`notaryd serve` notifies a job's end once, signed, retried: a real daemon, emulator, receiver.

The daemon notarises a .app bundle (zipped, accepted, stapled) and a zip; the receiver answers
the first POST with 503 to force a retry. After the daemon stops (which flushes deliveries) every
job has exactly one delivered notification whose HMAC the test verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from service.emulator.notary import BackgroundEmulator
from service.emulator.sample_app import make_sample_app
from tests.support.daemon import Daemon
from tests.support.emulator import notary_env
from tests.support.forward_proxy import ForwardProxyThread
from uploader.staple.check import check_staple

pytestmark = pytest.mark.process

SECRET = "correct horse battery staple"


class Receiver(http.server.ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.posts: list[tuple[int, dict[str, str], bytes]] = []  # (answer, headers, body)
        self.fail_first = 1
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.server.lock:
            answer = 503 if self.server.fail_first > 0 else 204
            self.server.fail_first -= 1
            self.server.posts.append((answer, dict(self.headers), body))
            self.server.arrived.notify_all()
        self.send_response(answer)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_each_job_end_is_notified_once_with_a_valid_signature(
    tmp_path: Path, notary: BackgroundEmulator, receiver: Receiver
) -> None:
    notary.call(lambda e: setattr(e.tickets, "propagation_seconds", 0.5))
    env = notary_env(notary, tmp_path / "keys")
    env.update(NOTARYD_NOTIFY_URL=receiver.url, NOTARYD_NOTIFY_SECRET=SECRET,
               NOTARYD_TICKET_URL=notary.emulator.ticket_url)
    d = Daemon(tmp_path, fake=False, env=env)
    d.start()
    app = make_sample_app(d.archives, "Game")
    jobs = [d.submit(app, skip_preflight=True), d.submit(d.archive("Other.zip"),
                                                         skip_preflight=True)]
    finished = [d.wait_for(j["id"], "accepted", "failed", timeout=90) for j in jobs]
    assert [j["state"] for j in finished] == ["accepted", "accepted"], finished
    assert check_staple(app).ok  # the daemon stapled the bundle after Accepted
    reports = [d.request("GET", f"/v1/jobs/{j['id']}/log")[1]["report"] for j in jobs]
    assert "stapled the ticket" in reports[0] and "cannot be stapled" in reports[1]
    with receiver.arrived:
        assert receiver.arrived.wait_for(
            lambda: sum(answer == 204 for answer, _, _ in receiver.posts) == 2, timeout=60)
    d.stop()  # flushes any delivery still pending; none may follow

    delivered = [json.loads(body) for answer, _, body in receiver.posts if answer == 204]
    assert sorted(doc["job"] for doc in delivered) == sorted(j["id"] for j in jobs)
    for _, headers, body in receiver.posts:
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-Notaryd-Signature"], expected)
    retried = [json.loads(body) for answer, _, body in receiver.posts if answer == 503]
    assert len(retried) == 1
    assert retried[0]["delivery"] in {doc["delivery"] for doc in delivered}  # same delivery
    by_job = {doc["job"]: doc for doc in delivered}
    for job in finished:
        doc = by_job[job["id"]]
        assert doc["event"] == "job.finished" and doc["verdict"] == "Accepted"
        assert doc["submission_id"] == job["submission_id"]
        landed = notary.call(lambda e, sid=job["submission_id"]: e.submissions[sid].sha256)
        assert doc["archive_sha256"] == landed
        timings = doc["timings"]
        assert timings["finished_at"] >= timings["started_at"] >= timings["created_at"] - 1
        assert timings["duration_seconds"] >= 0


def test_the_daemon_notifies_and_notarises_through_the_proxy(
    tmp_path: Path, notary: BackgroundEmulator, receiver: Receiver
) -> None:
    receiver.fail_first = 0
    env = notary_env(notary, tmp_path / "keys")
    with ForwardProxyThread() as proxy:
        env.update(NOTARYD_NOTIFY_URL=receiver.url, NOTARYD_NOTIFY_SECRET=SECRET,
                   HTTP_PROXY=proxy.url, NO_PROXY="")
        d = Daemon(tmp_path, fake=False, env=env)
        d.start()
        job = d.submit(d.archive("Other.zip"), skip_preflight=True)
        assert d.wait_for(job["id"], "accepted", "failed", timeout=90)["state"] == "accepted"
        with receiver.arrived:
            assert receiver.arrived.wait_for(lambda: len(receiver.posts) == 1, timeout=60)
        d.stop()
        passages = proxy.passages()
    hook, api = urlsplit(receiver.url), urlsplit(notary.emulator.api_url)
    assert [p.method for p in passages if p.target == hook.netloc] == ["POST"]
    assert any(p.target == api.netloc and p.path.startswith(api.path) for p in passages)
