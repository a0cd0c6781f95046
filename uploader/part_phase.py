"""The part phase of one upload: admission, attempts, and the stall watchdog.

``PartPhase.run`` starts one task per part not yet done. Each task loops over attempts:

1. **Admission**: the ``UploadSession`` lets a part go when a slot is free and the link
   governor's pace allows (``_admit``); an optional process-wide ``part_slots`` semaphore is
   shared between jobs.
2. **Read**: the part is read into a pooled buffer on a worker thread and checked against its
   planned checksum (the first read fixes the checksum, stored before any byte is sent).
3. **Send** UploadPart under the **stall watchdog** (``_watch``): there is no whole-request
   deadline; an attempt is abandoned only when no byte has moved for ``stall_timeout_seconds``
   by the injected monotonic clock, so a slow but moving link always finishes and a hung
   connection (aiobotocore's ``Expect: 100-continue`` wait included) never blocks longer.
4. **Outcome**: an ETag is committed first (``_acknowledge``, the one place a part becomes
   done), then counted; a failure goes to the session, whose failure table says retry after
   back-off, re-read the part, or stop.

How far each attempt got is recorded as it goes, so after a kill only the bytes that had left
count as re-sent. The concurrent parts' failures are reduced to the one that decides
(``most_significant``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from uploader.buffers import ReadBuffer, page_aligned
from uploader.config import EngineConfig
from uploader.credentials import Credentials
from uploader.errors import CredentialsExpiredError, SourceChangedError, StallError
from uploader.events import (
    BytesSent,
    Emitter,
    Notice,
    PartAcknowledged,
    PartRetried,
    UploadStateChanged,
)
from uploader.hashing import part_checksum_sync
from uploader.lifecycle import UploadState
from uploader.part_body import PartProgress, PartStream, read_part
from uploader.retry import Retrier
from uploader.s3api import S3Api
from uploader.s3client import classify
from uploader.source_file import FileIdentity, open_source
from uploader.throttle import Throttle
from uploader.upload_session import (
    FAILURES,
    Action,
    Classified,
    ErrorKind,
    UploadSession,
    most_significant,
)
from uploader.upload_state import PartRecord, UploadRecord, UploadStore

log = logging.getLogger("uploader.engine")  # the engine's one logger, whichever module logs

# How often the watchdog looks at a part's progress (and reports bytes sent).
WATCH_TICK_SECONDS = 0.5
# How far a part attempt gets is recorded in steps of this many bytes (a handful of small writes
# per 16 MiB part): after a kill, at most this much per part in flight counts as sent once.
RECORD_STEP_BYTES = 4 * 1024 * 1024


class Counters:
    """Bytes one run of an upload sent, and how far any attempt got into each part."""

    def __init__(self) -> None:
        self.sent = 0
        self.resent = 0
        self.sent_before: dict[int, int] = {}  # part -> most of it any attempt has sent

    def add(self, nbytes: int, resent: bool) -> None:
        self.sent += nbytes
        if resent:
            self.resent += nbytes


@dataclass
class _Run:
    """What the part tasks of one upload share."""

    client: S3Api
    record: UploadRecord
    credentials: Credentials
    counters: Counters
    fd: int
    session: UploadSession
    slots: _PartSlots
    admitted: asyncio.Condition = field(default_factory=asyncio.Condition)


@dataclass(eq=False)
class PartPhase:
    """Sends the parts of every upload of one engine (see the module docstring). One event loop.

    ``monotonic`` is the clock of the admission pace and of the stall watchdog; ``now`` (wall
    time) is what the credentials' expiry is compared with.
    """

    config: EngineConfig
    store: UploadStore
    emit: Emitter
    retrier: Retrier
    part_slots: asyncio.Semaphore | None
    throttle: Throttle | None
    sleep: Callable[[float], Awaitable[None]]
    uniform: Callable[[float, float], float]
    now: Callable[[], float]
    monotonic: Callable[[], float]

    async def run(self, client: S3Api, record: UploadRecord, credentials: Credentials,
                  counters: Counters) -> UploadRecord:
        """Send every part not yet done; the upload as it then is (UPLOADING)."""
        record = await self.store.set_state(record.id, UploadState.UPLOADING)
        parts = await self.store.parts(record.id)
        pending = [p for p in parts if not p.done]
        done_bytes = sum(p.length for p in parts if p.done)
        if done_bytes and pending:
            self.emit(Notice(record.target, f"resuming: {len(parts) - len(pending)} of "
                                             f"{len(parts)} parts already uploaded"))
        self.emit(UploadStateChanged(record.target, UploadState.UPLOADING,
                                      record.identity.size, done_bytes))
        if not pending:
            return record
        session = UploadSession(record.target, self.config.concurrency, self.config.retry,
                                uniform=self.uniform)
        fd = await _open_source(record.identity)
        try:
            run = _Run(client, record, credentials, counters, fd, session,
                       _PartSlots(self.config.concurrency, record.part_size))
            try:
                async with asyncio.TaskGroup() as group:
                    for part in pending:
                        group.create_task(self._send_part(run, part))
            except BaseExceptionGroup as group_error:
                raise most_significant(_leaves(group_error)) from None
        finally:
            os.close(fd)
        return record

    async def _admit(self, run: _Run) -> None:
        """Wait until the session lets one more part go (a free slot, the link's pace)."""
        while True:
            async with run.admitted:
                wait = run.session.admission(self.monotonic())
                while wait is None:
                    await run.admitted.wait()
                    wait = run.session.admission(self.monotonic())
                if wait <= 0:
                    run.session.started()
                    return
            await self.sleep(wait)

    async def _send_part(self, run: _Run, part: PartRecord) -> None:
        """Send one part until S3 acknowledges it; the session decides about each failure."""

        async def attempt() -> None:
            await self._attempt(run, part)

        async def decide(exc: Exception, _retry_number: int) -> float:
            nonlocal part
            if not isinstance(exc, _AttemptFailed):
                raise exc
            part = exc.part  # its checksum known from the first read on
            return await self._decide(run, exc)

        await self.retrier.run(attempt, decide)

    async def _attempt(self, run: _Run, part: PartRecord) -> None:
        """One attempt: admitted, read, sent under the watchdog, acknowledged; a failure S3 or
        the link caused is raised as ``_AttemptFailed`` for the session to judge."""
        self._check_credentials(run)
        await self._admit(run)
        try:
            async with run.slots.buffer() as buffer, self._global_slot():
                number, recorded = await self.store.start_attempt(run.record.id, part.number)
                part = await self._read(run.fd, run.record, part, buffer)
                verdict = await self._send(run, part, buffer, recorded)
                if verdict is None:
                    return
            if FAILURES[ErrorKind(verdict.kind)].action is Action.REREAD:
                await self._check_unchanged(run.record, part)  # else: damaged in transit
        except BaseException:
            run.session.abandoned()  # cancelled, or the file or the database failed us
            await _wake(run.admitted)
            raise
        raise _AttemptFailed(verdict, number, part)

    async def _send(self, run: _Run, part: PartRecord, buffer: ReadBuffer,
                    recorded: int) -> Classified | None:
        """UploadPart under the watchdog: None once S3 acknowledged it, else the failure's
        verdict (judged by the caller, outside the slot)."""
        record, counters = run.record, run.counters
        await self.store.check_fence()  # a run that lost its hold sends nothing more
        progress = PartProgress(self.monotonic)
        request = run.client.upload_part(
            Bucket=record.bucket, Key=record.key, UploadId=record.s3_upload_id,
            PartNumber=part.number, ContentLength=part.length,
            Body=PartStream(buffer, part.length, progress, self.throttle),
            **record.algorithm.arguments(part.checksum),
        )
        try:
            response = await self._watch(
                request, progress, run, part,
                sent_before=max(recorded, counters.sent_before.get(part.number, 0)))
        except Exception as exc:
            await self.store.record_sent(record.id, part.number,
                                          counters.sent_before.get(part.number, 0))
            return classify(exc)
        await self._acknowledge(run, part, str(response["ETag"]))
        return None

    async def _acknowledge(self, run: _Run, part: PartRecord, etag: str) -> None:
        """S3 holds the part: commit that first (the one place a part becomes done), then say so."""
        await self.store.mark_part_done(run.record.id, part.number, etag)
        self.emit(PartAcknowledged(run.record.target, part.number, part.length))
        run.session.acknowledged(part.number)
        await _wake(run.admitted)

    async def _decide(self, run: _Run, failed: _AttemptFailed) -> float:
        """The session's verdict on a failed attempt: the delay before the next, or raise."""
        number, verdict = failed.part.number, failed.verdict
        try:
            retry = run.session.failed(number, verdict, self.monotonic())
        finally:
            await _wake(run.admitted)
        self.emit(PartRetried(run.record.target, number, verdict.reason, failed.attempt,
                               error=verdict.message, delay_seconds=retry.delay))
        log.debug("%s part %d attempt %d failed (%s: %s); retrying", run.record.target,
                  number, failed.attempt, verdict.code, verdict.message)
        return retry.delay

    async def _read(
        self, fd: int, record: UploadRecord, part: PartRecord, buffer: ReadBuffer
    ) -> PartRecord:
        """Read the part into ``buffer`` and check it against (or fix) its planned checksum."""
        checksum = await asyncio.to_thread(read_part, fd, part.part, buffer, record.algorithm)
        if checksum is None:
            raise SourceChangedError(record.identity.path, "the file is shorter than planned")
        if not part.checksum:  # first read: the checksum joins the plan before any byte is sent
            await self.store.set_part_checksum(record.id, part.number, checksum)
            return dataclasses.replace(part, checksum=checksum)
        if checksum != part.checksum:
            raise SourceChangedError(record.identity.path, f"part {part.number} changed on disk")
        return part

    async def _check_unchanged(self, record: UploadRecord, part: PartRecord) -> None:
        """After BadDigest: a part that changed on disk ends the upload; else it was the wire."""
        on_disk = await asyncio.to_thread(
            part_checksum_sync, record.identity.path, part.part, record.algorithm
        )
        if on_disk != part.checksum:
            raise SourceChangedError(record.identity.path, f"part {part.number} changed on disk")

    async def _watch(self, request: Awaitable[dict[str, Any]], progress: PartProgress, run: _Run,
                     part: PartRecord, *, sent_before: int) -> dict[str, Any]:
        """Await ``request`` while bytes keep moving; cancel it after a stall.

        How far this attempt got is recorded every ``RECORD_STEP_BYTES`` (a quarter of smaller
        parts), so that after a restart only the bytes that really left count as re-sent, not
        whole parts (see ``_Tally`` for what counts as re-sent).
        """
        step = min(RECORD_STEP_BYTES, max(1, part.length // 4))
        stall = self.config.stall_timeout_seconds
        tick = min(WATCH_TICK_SECONDS, stall / 4)
        tally = _Tally(self.emit, run.record.target, run.counters, sent_before)
        task = asyncio.ensure_future(request)
        recorded = sent_before
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=tick)
                reached = tally.report(progress)
                if done:
                    return task.result()
                if reached - recorded >= step:
                    await self.store.record_sent(run.record.id, part.number, reached)
                    recorded = reached
                _, _, last = progress.snapshot()
                if self.monotonic() - last > stall:
                    raise StallError(part.number, stall)
        finally:
            await _settle(task)
            reached = tally.report(progress)
            run.counters.sent_before[part.number] = max(
                run.counters.sent_before.get(part.number, 0), reached)

    def _check_credentials(self, run: _Run) -> None:
        left = run.credentials.seconds_left(self.now())
        if left is not None and left <= 0:
            raise CredentialsExpiredError(
                f"{run.record.target}: the upload credentials expired; new credentials are needed"
            )

    @contextlib.asynccontextmanager
    async def _global_slot(self) -> AsyncIterator[None]:
        if self.part_slots is None:
            yield
            return
        async with self.part_slots:
            yield


class _Tally:
    """Reports one attempt's bytes as they move: sent for the first time, or re-sent.

    A byte counts as re-sent when an earlier attempt had sent it already (the part's first
    ``sent_before`` bytes), or when aiohttp sends it twice within this request (a dead
    keep-alive connection); the rest are sent for the first time.
    """

    def __init__(self, emit: Emitter, target: str, counters: Counters, sent_before: int) -> None:
        self.emit = emit
        self._target = target
        self._counters = counters
        self._sent_before = sent_before
        self._first = self._resent = 0

    def report(self, progress: PartProgress) -> int:
        """Emit what moved since the last report; returns how far into the part it got."""
        sent, again, _ = progress.snapshot()
        reached = sent - again  # each offset of the part once
        first = reached - min(reached, self._sent_before)
        resent = sent - first
        for nbytes, is_resent in ((first - self._first, False), (resent - self._resent, True)):
            if nbytes > 0:
                self._counters.add(nbytes, is_resent)
                self.emit(BytesSent(self._target, nbytes, is_resent))
        self._first, self._resent = first, resent
        return reached


async def _settle(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` if it still runs and wait for it; its failure is reported by the caller."""
    if not task.done():
        task.cancel()
        await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # retrieved: the failure is reported through the caller


async def _open_source(identity: FileIdentity) -> int:
    """Open the file being uploaded for reading, checking it is still the one planned.

    The one place the engine opens the source: every part is read from this descriptor. No
    symlink, a regular file, inside the allowed roots (when confined), the very file hashed.
    """
    return await asyncio.to_thread(open_source, identity.path, identity)


class _PartSlots:
    """At most ``count`` parts in flight, each with a reusable buffer of ``size`` bytes.

    Buffers are allocated on first use and kept: re-allocating 16 MiB per part would cost
    thousands of page faults per part. They are page-aligned (``uploader.buffers``).
    """

    def __init__(self, count: int, size: int) -> None:
        self._limit = asyncio.Semaphore(count)
        self._free: list[ReadBuffer] = []
        self._size = size

    @contextlib.asynccontextmanager
    async def buffer(self) -> AsyncIterator[ReadBuffer]:
        async with self._limit:
            buffer = self._free.pop() if self._free else page_aligned(self._size)
            try:
                yield buffer
            finally:
                self._free.append(buffer)


async def _wake(admitted: asyncio.Condition) -> None:
    """A slot may have freed up: let waiting parts re-check their admission."""
    async with admitted:
        admitted.notify_all()


@dataclass(eq=False)
class _AttemptFailed(Exception):
    """One attempt of a part failed; carries the verdict (and the part, its checksum known from
    the first read on) to the session's decision."""

    verdict: Classified
    attempt: int
    part: PartRecord


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    leaves: list[BaseException] = []
    for exc in group.exceptions:
        leaves.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return leaves
