"""What happens to a submission once its object lands: inspection, verdict, ticket, webhook.

The S3 front reports each completed ``PutObject``/``CompleteMultipartUpload``; the first one
for an In Progress submission starts processing (an overwrite after the verdict does not). The
object is read back, streamed, and inspected (``verdicts.inspect``): an object whose SHA-256 is
not the one declared at submission is Invalid ("does not match its declared hash"). Processing
lasts at least ``processing_delay_seconds``; an Accepted upload teaches the ticket desk its
signatures, which its developer log lists as ``ticketContents``.
A stuck submission keeps its verdict pending until ``release``. Settling publishes the tickets
and, when the submission asked for one, posts Apple's signed ``processing-complete`` webhook.

Every task started here is owned by the ``Processor`` and cancelled by ``stop``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import aiohttp
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from service.emulator.codesign import SignedCode
from service.emulator.config import EmulatorConfig
from service.emulator.responses import iso_time
from service.emulator.s3front import S3Front
from service.emulator.submissions import EmulatedSubmission
from service.emulator.tickets import TicketDesk
from service.emulator.verdicts import (
    VerdictRule,
    developer_log,
    first_match,
    hash_mismatch_rule,
    inspect,
)
from uploader.lifecycle import NotaryStatus

log = logging.getLogger(__name__)


class Webhooks:
    """Posts ``processing-complete`` notifications signed with the service's own EC key."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._session: aiohttp.ClientSession | None = None

    def body(self, submission: EmulatedSubmission) -> dict[str, str]:
        payload = json.dumps(
            {
                "completed_time": iso_time(submission.completed_at or self._clock()),
                "event": "processing-complete",
                "start_time": iso_time(submission.created_at),
                "submission_id": submission.id,
                "team_id": submission.issuer_id,
            }
        )
        signature = self._key.sign(payload.encode(), ec.ECDSA(hashes.SHA256()))
        public_pem = self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return {
            "payload": payload,
            "signature": base64.b64encode(signature).decode(),
            "cert_chain": base64.b64encode(public_pem).decode(),
        }

    async def notify(self, submission: EmulatedSubmission) -> None:
        assert submission.webhook is not None
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        try:
            async with self._session.post(submission.webhook, json=self.body(submission)) as answer:
                await answer.read()
        except (aiohttp.ClientError, TimeoutError) as error:
            log.warning("webhook for %s failed: %s", submission.id, error)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


class Processor:
    """Processes landed submissions; owns every task it starts (``stop`` cancels them)."""

    def __init__(self, config: EmulatorConfig, s3: S3Front, tickets: TicketDesk,
                 clock: Callable[[], float]) -> None:
        self.config, self._s3, self._tickets, self._clock = config, s3, tickets, clock
        self.webhooks = Webhooks(clock)
        self._tasks: set[asyncio.Task[None]] = set()

    def landed(self, submission: EmulatedSubmission) -> None:
        submission.landed_at = self._clock()
        if submission.status != NotaryStatus.IN_PROGRESS or submission.processing:
            return  # an overwrite after the verdict does not re-trigger processing
        submission.processing = True
        self._spawn(self._process(submission))

    def release(self, submission: EmulatedSubmission) -> None:
        """Un-stick a submission; its verdict follows at once if processing had finished."""
        submission.stuck = False
        if submission.pending is not None:
            status, doc = submission.pending
            submission.pending = None
            self._settle(submission, status, doc)

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.webhooks.close()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("emulator task failed", exc_info=task.exception())

    def _read_back(self, submission: EmulatedSubmission) -> AsyncIterator[bytes]:
        return self._s3.read_object(self.config.bucket, submission.object)

    async def _process(self, submission: EmulatedSubmission) -> None:
        started = time.monotonic()
        markers: frozenset[bytes] = frozenset()
        rule: VerdictRule | None = None
        signed: list[SignedCode] = []
        try:
            if self.config.inspect_uploads:
                found = await inspect(self._read_back(submission), self.config.rules)
                submission.uploaded_sha256, submission.uploaded_bytes = found.sha256, found.size
                markers = found.markers
                if found.sha256 != submission.sha256:
                    rule = hash_mismatch_rule(submission.sha256, found.sha256, submission.name)
            delay = self.config.processing_delay_seconds - (time.monotonic() - started)
            if delay > 0:
                await asyncio.sleep(delay)
            rule = rule or first_match(self.config.rules, submission.name, markers)
            if rule is None:  # Accepted: find the signatures its tickets are filed under
                signed = await self._tickets.learn(
                    submission.id, submission.name, self._read_back(submission)
                )
            doc = developer_log(
                rule,
                submission_id=submission.id,
                name=submission.name,
                sha256=submission.uploaded_sha256 or submission.sha256,
                uploaded_at=submission.landed_at or self._clock(),
                ticket_contents=[code.log_entry() for code in signed],
            )
            status = NotaryStatus(doc["status"])
        finally:
            submission.processing = False
        if submission.stuck:
            submission.pending = (status, doc)
            return
        self._settle(submission, status, doc)

    def _settle(
        self, submission: EmulatedSubmission, status: NotaryStatus, doc: dict[str, Any]
    ) -> None:
        submission.status = status
        submission.log = doc
        submission.completed_at = self._clock()
        self._tickets.publish(submission.id)
        if submission.webhook:
            self._spawn(self.webhooks.notify(submission))
