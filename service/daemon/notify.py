"""Job-end notifications: one signed JSON POST per job to ``NOTARYD_NOTIFY_URL``.

A CI can wait for this instead of polling. Body (UTF-8 JSON)::

    {"event": "job.finished", "delivery": "<uuid, same on every retry>", "job": "<id>",
     "state": "accepted", "path": "...", "name": ..., "submission_id": "...",
     "verdict": "Accepted", "archive_sha256": "<hex>", "error": null,
     "timings": {"created_at": ..., "started_at": ..., "finished_at": ..., "duration_seconds": ...}}

Header ``X-Notaryd-Signature: sha256=<hex HMAC-SHA256 of the raw body under
NOTARYD_NOTIFY_SECRET>``; verify it over the exact bytes received, in constant time.

Delivery: POSTed to ``NOTARYD_NOTIFY_URL`` only, never following a redirect (the signed body
must not travel on to wherever a 3xx points): a 3xx is a failed attempt, like a network error,
408, 429 or a 5xx, and is retried through the project's ``Retrier`` (full-jitter back-off from
2 s, capped at 60 s) for at most ``MAX_ATTEMPTS`` attempts, counted across restarts; any other
4xx is final. Each attempt and its outcome is one log line.

Durability: a notification is written to the ``notifications`` table (``migrations``) when its
job ends and deleted once it is delivered, refused or given up. One still pending at a shutdown
or a crash is sent again, same delivery id, when the daemon starts (``resume``). Once per job:
the scheduler ends a job exactly once, and ``job_ended`` ignores a job id it has already sent.
Each delivery is a task this notifier owns; ``close`` gives them a short grace and then cancels
them (their rows stay for the next start).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp

from service.settings import Settings
from uploader.database import Database
from uploader.errors import ConfigError
from uploader.notary.client import read_capped
from uploader.notary.store import SubmissionStore
from uploader.proxies import proxy_for_request
from uploader.retry import Retrier, RetryPolicy

from . import migrations
from .jobs import Job
from .logfmt import kv
from .snapshot import JobSnapshot

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Notaryd-Signature"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


MAX_ATTEMPTS = 20  # 19 waits: about 7.5 minutes of back-off on average, 15 at most
DELIVERY_POLICY = RetryPolicy(initial_delay_seconds=2.0, throttled_initial_delay_seconds=2.0,
                              max_delay_seconds=60.0, max_attempts=MAX_ATTEMPTS)
ANSWER_BYTES = 4096  # a receiver's answer is read (to free the connection), never used


class _Undelivered(Exception):
    def __init__(self, why: str, *, final: bool = False) -> None:
        super().__init__(why)
        self.why = why
        self.final = final


@dataclass(frozen=True)
class PendingNotification:
    delivery: str
    job: str
    document: dict[str, Any]
    attempts: int  # made so far, by this run and earlier ones


@dataclass(frozen=True)
class NotificationStore:
    """The ``notifications`` table: what is still to be delivered. Safe from many tasks.

    Make one with ``await NotificationStore.open(db)``: that brings the daemon's tables up to date.
    """

    _db: Database

    @classmethod
    async def open(cls, db: Database) -> NotificationStore:
        await db.require(migrations.SCHEMA)
        return cls(db)

    async def add(self, pending: PendingNotification) -> None:
        await self._db.execute(
            "INSERT OR IGNORE INTO notifications (delivery, job, document, attempts, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (pending.delivery, pending.job, json.dumps(pending.document, sort_keys=True),
             pending.attempts, time.time()))

    async def pending(self) -> list[PendingNotification]:
        rows = await self._db.fetchall(
            "SELECT delivery, job, document, attempts FROM notifications ORDER BY created_at")
        return [PendingNotification(row["delivery"], row["job"], json.loads(row["document"]),
                                    row["attempts"]) for row in rows]

    async def attempted(self, delivery: str, attempts: int) -> None:
        await self._db.execute("UPDATE notifications SET attempts = ? WHERE delivery = ?",
                               (attempts, delivery))

    async def remove(self, delivery: str) -> None:
        await self._db.execute("DELETE FROM notifications WHERE delivery = ?", (delivery,))


class JobNotifier:
    def __init__(self, url: str | None, secret: str | None, db: Database | None = None, *,
                 retrier: Retrier | None = None) -> None:
        if url and not secret:
            raise ConfigError("NOTARYD_NOTIFY_URL is set but NOTARYD_NOTIFY_SECRET is not: set a "
                              "shared secret so the receiver can verify the notifications")
        self._url = url
        self._secret = secret or ""
        self._db = db
        self._retrier = retrier or Retrier(DELIVERY_POLICY)
        self._sent: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._store: NotificationStore | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> JobNotifier:
        """Checks the settings at once (before the daemon opens anything); ``bind`` the db."""
        return cls(settings.notify_url, settings.notify_secret)

    def bind(self, db: Database) -> None:
        self._db = db

    async def resume(self) -> int:
        """Start delivering what an earlier run left pending; returns how many."""
        if not self._url or self._db is None:
            return 0
        left = await (await self._notifications()).pending()
        for pending in left:
            self._sent.add(pending.job)
            self._spawn(self._deliver(pending), pending.job)
        if left:
            log.info("job notifications resumed %s", kv(pending=len(left)))
        return len(left)

    def job_ended(self, job: Job) -> None:
        """Called by the scheduler when a job reaches its terminal state."""
        if not self._url or job.id in self._sent:
            return
        self._sent.add(job.id)
        self._spawn(self._record_and_deliver(_describe(job.snapshot())), job.id)

    async def close(self, grace_seconds: float = 5.0) -> None:
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _spawn(self, work: Coroutine[Any, Any, None], job: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=f"notify-{job}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _notifications(self) -> NotificationStore:
        assert self._db is not None
        if self._store is None:
            self._store = await NotificationStore.open(self._db)
        return self._store

    async def _record_and_deliver(self, document: dict[str, Any]) -> None:
        try:
            document["archive_sha256"] = await self._sha256_of(document["submission_id"])
            pending = PendingNotification(document["delivery"], document["job"], document, 0)
            if self._db is not None:
                await (await self._notifications()).add(pending)
        except Exception:  # a notification must never take the daemon down
            log.exception("job notification failed %s", kv(job=document["job"]))
            return
        await self._deliver(pending)

    async def _deliver(self, pending: PendingNotification) -> None:
        job = pending.job
        document = {**pending.document, "sent_at": time.time()}
        body = json.dumps(document, sort_keys=True).encode()
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(self._secret, body)}
        made = pending.attempts

        async def attempt() -> None:
            nonlocal made
            made += 1
            await self._post(body, headers)

        async def decide(error: Exception, _retry_number: int) -> float:
            if not isinstance(error, _Undelivered) or error.final:
                raise error
            if self._retrier.gives_up_after(made):
                raise error
            if store is not None:
                await store.attempted(pending.delivery, made)
            delay = self._retrier.delay(made - 1)
            log.info("job notification retry %s", kv(job=job, last=error.why, attempts=made,
                                                     in_seconds=round(delay, 1)))
            return delay

        try:
            store = await self._notifications() if self._db is not None else None
            try:
                await self._retrier.run(attempt, decide)
            except _Undelivered as error:
                what = "refused" if error.final else "given up"
                log.warning("job notification %s %s", what,
                            kv(job=job, last=error.why, attempts=made))
            else:
                log.info("job notification delivered %s", kv(job=job, attempts=made))
            if store is not None:  # not shielded: cut short, the row stays and is sent again
                await store.remove(pending.delivery)
        except Exception:  # a notification must never take the daemon down
            log.exception("job notification failed %s", kv(job=job))

    async def _post(self, body: bytes, headers: dict[str, str]) -> None:
        """One attempt; ``_Undelivered`` says why it failed and whether that is final."""
        assert self._url is not None
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        try:
            async with self._session.post(self._url, data=body, headers=headers,
                                          allow_redirects=False,
                                          proxy=await proxy_for_request(self._url)) as response:
                await read_capped(response, ANSWER_BYTES, "notify", None, truncate=True)
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            raise _Undelivered(f"network error ({error.__class__.__name__})") from None
        if 200 <= status < 300:
            return
        if 300 <= status < 400:
            raise _Undelivered(f"HTTP {status}: a redirect, not followed (notifications go to "
                               "NOTARYD_NOTIFY_URL only)")
        raise _Undelivered(f"HTTP {status}",
                           final=400 <= status < 500 and status not in (408, 429))

    async def _sha256_of(self, submission_id: str | None) -> str | None:
        if submission_id is None or self._db is None:
            return None
        record = await SubmissionStore(self._db).get(submission_id)
        return record.sha256 if record is not None else None


def _describe(job: JobSnapshot) -> dict[str, Any]:
    duration = (job.finished_at - job.started_at
                if job.finished_at is not None and job.started_at is not None else None)
    return {
        "event": "job.finished",
        "delivery": str(uuid.uuid4()),
        "job": job.id,
        "state": str(job.state),
        "path": job.path,
        "name": job.name,
        "submission_id": job.submission_id,
        "verdict": job.notary_status,
        "error": job.error,
        "timings": {"created_at": job.created_at, "started_at": job.started_at,
                    "finished_at": job.finished_at, "duration_seconds": duration},
    }
