"""`notaryd serve` notifies a job's end once, signed, retried: a real daemon, emulator, receiver.

The daemon notarises a .app bundle (zipped, accepted, stapled) and a zip; the receiver answers
the first POST with 503 to force a retry. After the daemon stops (which flushes deliveries) every
job has exactly one delivered notification whose HMAC the test verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from service.emulator.notary import BackgroundEmulator
from service.emulator.sample_app import make_sample_app
from tests.support.daemon import Daemon
from tests.support.emulator import notary_env
from tests.support.forward_proxy import ForwardProxyThread
from tests.support.http_servers import Answer, ScriptedServer, scripted_server
from uploader.staple.check import check_staple

pytestmark = pytest.mark.process

SECRET = "correct horse battery staple"


@pytest.fixture
def receiver() -> Iterator[ScriptedServer]:
    answers = iter([Answer(503)])  # the first POST fails, to force a retry
    with scripted_server(lambda _: next(answers, Answer(204))) as server:
        yield server


def test_each_job_end_is_notified_once_with_a_valid_signature(
    tmp_path: Path, notary: BackgroundEmulator, receiver: ScriptedServer
) -> None:
    notary.call(lambda e: setattr(e.tickets, "propagation_seconds", 0.5))
    env = notary_env(notary, tmp_path / "keys")
    env.update(NOTARYD_NOTIFY_URL=receiver.url("/hook"), NOTARYD_NOTIFY_SECRET=SECRET,
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
    receiver.wait_for(lambda _: receiver.answers.count(204) == 2, within=60,
                      what="both jobs' notifications delivered")
    d.stop()  # flushes any delivery still pending; none may follow
    posts = [(answer, request.headers, request.body)
             for answer, request in zip(receiver.answers, receiver.requests, strict=True)]

    delivered = [json.loads(body) for answer, _, body in posts if answer == 204]
    assert sorted(doc["job"] for doc in delivered) == sorted(j["id"] for j in jobs)
    for _, headers, body in posts:
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-Notaryd-Signature"], expected)
    retried = [json.loads(body) for answer, _, body in posts if answer == 503]
    assert len(retried) == 1
    assert retried[0]["delivery"] in {doc["delivery"] for doc in delivered}  # same delivery
    by_job = {doc["job"]: doc for doc in delivered}
    for job in finished:
        doc = by_job[job["id"]]
        assert doc["event"] == "job.finished" and doc["verdict"] == "Accepted"
        assert doc["submission_id"] == job["submission_id"]
        landed = notary.call(lambda e, sid=job["submission_id"]: e.submissions[sid].sha256)
        assert doc["archive_sha256"] == landed
        # the same instants the API reports for the job, and the duration between two of them
        assert doc["timings"] == {
            "created_at": job["created_at"], "started_at": job["started_at"], "finished_at": job["finished_at"],
            "duration_seconds": pytest.approx(job["finished_at"] - job["started_at"]),
        }
        assert job["finished_at"] > job["started_at"] >= job["created_at"]


def test_the_daemon_notifies_and_notarises_through_the_proxy(
    tmp_path: Path, notary: BackgroundEmulator
) -> None:
    env = notary_env(notary, tmp_path / "keys")
    with ForwardProxyThread() as proxy, scripted_server(lambda _: Answer(204)) as receiver:
        hook_url = receiver.url("/hook")
        env.update(NOTARYD_NOTIFY_URL=hook_url, NOTARYD_NOTIFY_SECRET=SECRET,
                   HTTP_PROXY=proxy.url, NO_PROXY="")
        d = Daemon(tmp_path, fake=False, env=env)
        d.start()
        job = d.submit(d.archive("Other.zip"), skip_preflight=True)
        assert d.wait_for(job["id"], "accepted", "failed", timeout=90)["state"] == "accepted"
        receiver.wait_for(lambda _: receiver.answers.count(204) == 1, within=60,
                          what="the job's notification delivered")
        d.stop()
        passages = proxy.passages()
    hook, api = urlsplit(hook_url), urlsplit(notary.emulator.api_url)
    assert [p.method for p in passages if p.target == hook.netloc] == ["POST"]
    assert any(p.target == api.netloc and p.path.startswith(api.path) for p in passages)
