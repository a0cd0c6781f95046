"""Job-end notifications go to NOTARYD_NOTIFY_URL only, and survive restarts until delivered
(issue 18, items 4 and 13): real receivers on loopback, a real state database, a real daemon.

* A 307 is a failed attempt, never followed: the signed body never reaches the other host, the
  attempt is retried and logged, and the job is "delivered" only once the receiver says 2xx.
* A notification is kept in the daemon's ``notifications`` table until it is delivered (or given
  up): the next notifier on the same database resumes it, same delivery id, and the attempts of
  both runs together stay within ``MAX_ATTEMPTS``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import sqlite3
import time
from pathlib import Path

import pytest

from service.daemon.job_states import JobOutcome
from service.daemon.jobs import Job
from service.daemon.notify import DELIVERY_POLICY, MAX_ATTEMPTS, JobNotifier
from tests.support.clocks import ManualClock
from tests.support.daemon import Daemon
from tests.support.http_servers import Answer, Request, scripted_server
from uploader.database import Database
from uploader.retry import Retrier

SECRET = "correct horse battery staple"


def finished_job(job_id: str = "a1b2c3d4e5f6") -> Job:
    now = time.time()
    return Job(id=job_id, path=Path("/builds/App.zip"), name=None, webhook=None,
               skip_preflight=False, state=JobOutcome.ACCEPTED, created_at=now - 60,
               updated_at=now, started_at=now - 50, finished_at=now)


def signed(request: Request) -> bool:
    expected = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(request.headers.get("X-Notaryd-Signature", ""), expected)


async def rows(db: Database) -> int:
    row = await db.fetchone("SELECT count(*) AS n FROM notifications")
    assert row is not None
    return int(row["n"])


class HeldAfter:
    """A retrier's sleep: returns at once ``waits`` times, then holds until cancelled (the
    daemon stopping while a retry waits)."""

    def __init__(self, waits: int) -> None:
        self.waits = waits
        self.holding = asyncio.Event()

    async def __call__(self, _seconds: float) -> None:
        if self.waits == 0:
            self.holding.set()
            await asyncio.Event().wait()
        self.waits -= 1


@pytest.mark.integration
async def test_a_redirect_is_a_failed_attempt_and_never_followed(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="service.daemon.notify")
    with scripted_server() as elsewhere:
        redirects = 2

        def answer(_: Request) -> Answer:
            nonlocal redirects
            if redirects:
                redirects -= 1
                return Answer(307, {"Location": elsewhere.url("/collect")})
            return Answer(204)

        with scripted_server(answer) as receiver:
            clock = ManualClock()
            notifier = JobNotifier(receiver.url("/hook"), SECRET, db,
                                   retrier=Retrier(DELIVERY_POLICY, sleep=clock.sleep))
            notifier.job_ended(finished_job())
            await notifier.close(grace_seconds=60)  # returns once the delivery is over

    assert elsewhere.requests == []  # the signed body went nowhere but NOTARYD_NOTIFY_URL
    assert receiver.answers == [307, 307, 204]
    assert len({r.body for r in receiver.requests}) == 1 and all(map(signed, receiver.requests))
    assert json.loads(receiver.requests[0].body)["job"] == "a1b2c3d4e5f6"
    lines = [r.getMessage() for r in caplog.records]
    assert sum("job notification retry" in line and "HTTP 307" in line for line in lines) == 2
    assert [line for line in lines if "delivered" in line] == [
        "job notification delivered job=a1b2c3d4e5f6 attempts=3"]
    assert len(clock.slept) == 2
    assert await rows(db) == 0  # delivered: nothing left for the next start


@pytest.mark.integration
async def test_retries_are_bounded_and_resumed_across_a_restart(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="service.daemon.notify")
    with scripted_server(lambda _: Answer(503)) as receiver:
        held = HeldAfter(waits=2)
        first = JobNotifier(receiver.url("/hook"), SECRET, db,
                            retrier=Retrier(DELIVERY_POLICY, sleep=held))
        first.job_ended(finished_job())
        await asyncio.wait_for(held.holding.wait(), 30)  # 3 attempts made, waiting for the 4th
        await first.close(grace_seconds=0)  # the daemon stops: the wait is cancelled
        assert len(receiver.requests) == 3
        assert await rows(db) == 1

        second = JobNotifier(receiver.url("/hook"), SECRET, db,
                             retrier=Retrier(DELIVERY_POLICY, sleep=ManualClock().sleep))
        assert await second.resume() == 1
        await second.close(grace_seconds=60)

    assert len(receiver.requests) == MAX_ATTEMPTS  # 3 by the first run, the rest by the second
    deliveries = {json.loads(r.body)["delivery"] for r in receiver.requests}
    assert len(deliveries) == 1  # one notification, resent under its own delivery id
    assert any(f"given up job=a1b2c3d4e5f6 last=\"HTTP 503\" attempts={MAX_ATTEMPTS}"
               in r.getMessage() for r in caplog.records)
    assert await rows(db) == 0


@pytest.mark.process
def test_a_notification_pending_when_the_daemon_stops_is_delivered_at_its_next_start(
    tmp_path: Path,
) -> None:
    accepting = False
    with scripted_server(lambda _: Answer(204 if accepting else 503)) as receiver:
        d = Daemon(tmp_path, env={"NOTARYD_NOTIFY_URL": receiver.url("/hook"),
                                  "NOTARYD_NOTIFY_SECRET": SECRET, "FAKE_PARTS": "2"})
        d.start()
        job = d.submit(d.archive("App.zip"))
        d.wait_for(job["id"], "accepted")
        refused = receiver.wait_for(lambda requests: len(requests) >= 1, within=30,
                                    what="a first delivery attempt")
        d.stop()  # the notification is still waiting for its next attempt
        accepting = True
        before = len(receiver.requests)
        d.start()
        receiver.wait_for(lambda requests: len(requests) > before, within=30,
                          what="the delivery after the restart")
        d.stop()

    assert receiver.answers[before] == 204
    delivered = receiver.requests[before]
    assert signed(delivered)
    document = json.loads(delivered.body)
    assert document["job"] == job["id"]
    assert document["delivery"] == json.loads(refused[0].body)["delivery"]
    assert receiver.answers.count(204) == 1  # once, not again after the delivery
    with sqlite3.connect(d.state_dir / "notaryd.sqlite3") as database:
        assert database.execute("SELECT count(*) FROM notifications").fetchone() == (0,)
