"""Job-end notifications: one signed JSON POST per job to ``NOTARYD_NOTIFY_URL``.

A CI can wait for this instead of polling. Body (UTF-8 JSON)::

    {"event": "job.finished", "delivery": "<uuid, same on every retry>", "job": "<id>",
     "state": "accepted", "path": "...", "name": ..., "submission_id": "...",
     "verdict": "Accepted", "archive_sha256": "<hex>", "error": null,
     "timings": {"created_at": ..., "started_at": ..., "finished_at": ..., "duration_seconds": ...}}

Header ``X-Notaryd-Signature: sha256=<hex HMAC-SHA256 of the raw body under
NOTARYD_NOTIFY_SECRET>``; verify it over the exact bytes received, in constant time.

Delivery: retried with back-off (2 s doubling to 60 s, for up to ``give_up_after_seconds``) on
network errors, 408, 429 and 5xx; any other 4xx is final. Once per job: the scheduler ends a
job exactly once, and ``job_ended`` ignores a job id it has already sent. Each delivery is a
task this notifier owns; ``close`` gives them a short grace and then cancels them.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from service.settings import Settings
from uploader.database import Database
from uploader.errors import ConfigError
from uploader.notary.store import SubmissionStore
from uploader.proxies import proxy_for_request

from .jobs import Job
from .logfmt import kv
from .snapshot import JobSnapshot

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Notaryd-Signature"
FIRST_DELAY_SECONDS = 2.0
MAX_DELAY_SECONDS = 60.0


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class JobNotifier:
    def __init__(self, url: str | None, secret: str | None, db: Database | None = None, *,
                 give_up_after_seconds: float = 900.0,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        if url and not secret:
            raise ConfigError("NOTARYD_NOTIFY_URL is set but NOTARYD_NOTIFY_SECRET is not: set a "
                              "shared secret so the receiver can verify the notifications")
        self._url = url
        self._secret = secret or ""
        self._db = db
        self._give_up_after = give_up_after_seconds
        self._sleep = sleep
        self._sent: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> JobNotifier:
        """Checks the settings at once (before the daemon opens anything); ``bind`` the db."""
        return cls(settings.notify_url, settings.notify_secret)

    def bind(self, db: Database) -> None:
        self._db = db

    def job_ended(self, job: Job) -> None:
        """Called by the scheduler when a job reaches its terminal state."""
        if not self._url or job.id in self._sent:
            return
        self._sent.add(job.id)
        document = _describe(job.snapshot())
        task = asyncio.get_running_loop().create_task(self._deliver(document),
                                                      name=f"notify-{job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self, grace_seconds: float = 5.0) -> None:
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _deliver(self, document: dict[str, Any]) -> None:
        assert self._url is not None
        job = document["job"]
        try:
            document["archive_sha256"] = await self._sha256_of(document["submission_id"])
            document["sent_at"] = time.time()
            body = json.dumps(document, sort_keys=True).encode()
            headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(self._secret, body)}
            await self._post_with_retries(job, body, headers)
        except Exception:  # a notification must never take the daemon down
            log.exception("job notification failed %s", kv(job=job))

    async def _post_with_retries(self, job: str, body: bytes, headers: dict[str, str]) -> None:
        assert self._url is not None
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        delay, waited, attempt = FIRST_DELAY_SECONDS, 0.0, 0
        while True:
            attempt += 1
            try:
                async with self._session.post(self._url, data=body, headers=headers,
                                              proxy=await proxy_for_request(self._url)) as response:
                    await response.content.read(4096)
                    status = response.status
            except (aiohttp.ClientError, TimeoutError, OSError) as error:
                why = f"network error ({error.__class__.__name__})"
            else:
                if 200 <= status < 300:
                    log.info("job notification delivered %s", kv(job=job, attempts=attempt))
                    return
                why = f"HTTP {status}"
                if 400 <= status < 500 and status not in (408, 429):
                    log.warning("job notification refused %s", kv(job=job, answer=why))
                    return
            if waited + delay > self._give_up_after:
                log.warning("job notification given up %s", kv(job=job, last=why,
                                                              attempts=attempt))
                return
            log.info("job notification retry %s", kv(job=job, last=why, in_seconds=delay))
            await self._sleep(delay)
            waited += delay
            delay = min(delay * 2, MAX_DELAY_SECONDS)

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
