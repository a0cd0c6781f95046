"""The resumable S3 multipart upload engine.

Theory of operation
-------------------
1. **Identify** the file (path, size, mtime, inode) and look for an unfinished upload of it to
   the same target in the state database.
2. **Plan** (new uploads only): part size from ``planning``; each part's checksum (the
   ``NOTARYD_CHECKSUM`` algorithm, CRC64NVME by default) is computed when the part is first read
   and stored before it is first sent, or taken from the caller's ``FileDigest`` (the notary
   layer hashes the whole file for its SHA-256 anyway and gets the part checksums in that pass).
3. **Create** the multipart upload (or, when resuming, **reconcile**: ListParts, paged past 1,000,
   counts a remote part only if its number, size and checksum match the plan). Reconciling is
   optional: our committed acknowledgements alone are enough to resume, so when the credentials
   do not allow ListParts (or the store lacks it) the engine says so once and goes on.
4. **Upload** the missing parts concurrently (``config.concurrency`` per upload, plus an optional
   process-wide ``part_slots`` semaphore shared between jobs). Each attempt streams the part from
   disk under a **stall watchdog**: there is no whole-request deadline, a part is abandoned and
   retried only when no byte has moved for ``stall_timeout_seconds``, so a slow but moving link
   always finishes and a hung connection (including aiobotocore's ``Expect: 100-continue`` wait)
   never blocks for longer than the stall timeout.
5. A part is marked done only after S3 returned its ETag *and* that was committed to SQLite, so a
   SIGKILL at any moment costs at most the parts in flight.
6. **Complete** with every part's ETag and checksum in order, after checking the file is still the
   one that was hashed; an object mixing two versions of the file is never completed. A Complete
   whose answer was lost is retried; if S3 then says NoSuchUpload, HeadObject confirms the object,
   and when HeadObject is not allowed either the upload ends *unconfirmed* (the caller decides:
   the notary layer lets the notary service judge the object).

Errors are classified in one place (``s3client.classify``): transient ones are retried per part
with capped, fully jittered exponential back-off for as long as the credentials are valid;
ExpiredToken surfaces as ``CredentialsExpiredError`` (the notary layer gets a new submission);
NoSuchUpload restarts the multipart upload; a changed source or a permanent refusal aborts it.
Optional calls (ListParts, AbortMultipartUpload, HeadObject) that S3 refuses never fail an upload
and never trigger an abort.
Cancellation (Ctrl-C, SIGTERM, a daemon shutdown) does *not* abort: that is what resume is for.
``abort()`` is the explicit user cancel.

Concurrency contract: one ``MultipartUploader`` may run several uploads at once on one event loop;
it must not be shared between event loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from uploader.config import EngineConfig
from uploader.credentials import Credentials
from uploader.database import Database
from uploader.errors import (
    CredentialsExpiredError,
    OperationDeniedError,
    PermanentUploadError,
    SourceChangedError,
    StallError,
    TransientUploadError,
    UploadError,
    UploadGoneError,
)
from uploader.events import (
    BytesSent,
    Emitter,
    Hook,
    Notice,
    PartAcknowledged,
    PartRetried,
    Retrying,
    RetryReason,
    UploadStateChanged,
)
from uploader.hashing import (
    FALLBACK,
    ChecksumAlgorithm,
    FileDigest,
    part_checksum_sync,
)
from uploader.lifecycle import UploadState
from uploader.part_body import PartProgress, PartStream, read_part
from uploader.planning import plan_upload
from uploader.retry import Retrier
from uploader.s3api import S3Api, S3Opener
from uploader.s3client import classify, open_s3_client
from uploader.source_file import FileIdentity, open_source
from uploader.throttle import Throttle
from uploader.upload_session import (
    Classified,
    ErrorKind,
    LocalPart,
    UploadSession,
    aborts_upload,
    most_significant,
    reconcile,
    stop_error,
)
from uploader.upload_state import ACTIVE_STATES, PartRecord, UploadRecord, UploadStore

log = logging.getLogger(__name__)
T = TypeVar("T")

# CompleteMultipartUpload may legitimately take minutes on a large object (S3 keeps the
# connection alive with whitespace), so it gets a long backstop instead of the stall timeout,
# and a client whose read timeout outlasts the gaps between S3's keep-alive whitespace.
COMPLETE_TIMEOUT_SECONDS = 900.0
COMPLETE_READ_TIMEOUT_SECONDS = 300.0
# How often the watchdog looks at a part's progress (and reports bytes sent).
WATCH_TICK_SECONDS = 0.5
# How far a part attempt gets is recorded in steps of this many bytes (a handful of small writes
# per 16 MiB part): after a kill, at most this much per part in flight counts as sent once.
RECORD_STEP_BYTES = 4 * 1024 * 1024
# The longest an abort (cleanup after a failure, or the user's cancel) may take.
ABORT_DEADLINE_SECONDS = 120.0
# What a store answers to CreateMultipartUpload with a checksum algorithm it does not support.
_ALGORITHM_REJECTED = {"InvalidRequest", "InvalidArgument", "NotImplemented"}
# NoSuchUpload mid-flight (a lifecycle rule or someone else aborted): start over at most this often.
MAX_RESTARTS = 3


@dataclass(frozen=True)
class UploadResult:
    bucket: str
    key: str
    size: int
    sha256: str
    etag: str
    part_count: int
    resumed: bool
    bytes_sent: int
    bytes_resent: int
    checksum: str  # the whole object's full-object checksum as S3 verified it ('' if composite)
    checksum_algorithm: str
    # False when a Complete whose answer was lost could not be confirmed (S3 forgot the upload
    # and HeadObject is not allowed): most likely complete, but only the object's reader knows.
    confirmed: bool = True


class MultipartUploader:
    def __init__(
        self,
        db: Database,
        config: EngineConfig,
        *,
        hooks: Iterable[Hook] = (),
        part_slots: asyncio.Semaphore | None = None,
        throttle: Throttle | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        uniform: Callable[[float, float], float] = random.uniform,
        now: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        s3: S3Opener | None = None,
    ) -> None:
        self._store = UploadStore(db)
        self._monotonic = monotonic
        self._retrier = Retrier(config.retry, sleep, uniform)
        self._open_s3: S3Opener = s3 or _open_real_s3
        self._config = config
        self._emit = Emitter(hooks)
        self._part_slots = part_slots
        self._throttle = throttle
        self._sleep = sleep
        self._uniform = uniform
        self._now = now

    def __repr__(self) -> str:
        c = self._config
        return (f"MultipartUploader(part_size={c.part_size}, concurrency={c.concurrency}, "
                f"stall_timeout={c.stall_timeout_seconds:g}s, endpoint={self._endpoint or 'aws'})")

    @property
    def _endpoint(self) -> str:
        if self._config.accelerate:
            return "s3-accelerate"
        return self._config.endpoint_url or ""

    # ------------------------------------------------------------------ public API

    async def upload(
        self,
        path: Path,
        bucket: str,
        key: str,
        credentials: Credentials,
        *,
        digest: FileDigest | None = None,
        restart: bool = False,
    ) -> UploadResult:
        """Upload ``path`` to ``s3://bucket/key``, resuming whatever a previous run left.

        There is no separate hashing pass: each part's checksum is computed when the part is
        first read, and stored before it is first sent. ``digest`` (from ``hash_file`` with
        this engine's plan; the notary layer needs the SHA-256 anyway) fixes the checksums in
        advance instead. ``restart`` discards an unfinished upload of a changed file.
        """
        identity = await asyncio.to_thread(FileIdentity.of, path)
        path = identity.path
        record = await self._store.find(path, bucket, key, self._endpoint)
        resumed = False
        if record is not None:
            changed = record.identity.difference(identity)
            if changed and record.state in ACTIVE_STATES and _same_bytes(record, digest, identity):
                # Another file with the very bytes this upload was planned for (a zip made
                # again after the last run's was removed): its parts already sent still hold.
                record = await self._store.adopt_file(record.id, identity)
                changed = None
            if record.state is UploadState.COMPLETED and not changed:
                return self._result(record, etag="", resumed=True, sent=0, resent=0)
            if record.state in ACTIVE_STATES and changed and not restart:
                raise SourceChangedError(
                    path, f"{changed} since the unfinished upload to s3://{bucket}/{key} began; "
                    "re-run with --restart to upload the new contents from the beginning"
                )
            if record.state in ACTIVE_STATES and changed:
                await self._abort_record(record, credentials)
                record = None
            elif record.state not in ACTIVE_STATES:
                record = None
            else:
                resumed = True
        if record is None:
            plan = plan_upload(identity.size, self._config.part_size, self._config.limits)
            if digest is not None and (digest.part_size != plan.part_size
                                       or digest.identity.path != identity.path
                                       or digest.identity.difference(identity)):
                digest = None  # made for another plan or another version of the file
            algorithm = self._config.checksum
            if digest is not None and digest.algorithm is not algorithm:
                # Its SHA-256 still holds; the part checksums are computed as parts are read.
                digest = dataclasses.replace(
                    digest, algorithm=algorithm, full_checksum="",
                    part_checksums=("",) * len(digest.part_checksums))
            record = await self._store.create(identity, plan.part_size, algorithm, bucket, key,
                                              self._endpoint, digest)
        async with self._open_s3(self._config, credentials, None) as client:
            return await self._drive(client, record, credentials, resumed)

    async def abort(self, path: Path, bucket: str, key: str, credentials: Credentials) -> bool:
        """Abort the unfinished upload of ``path`` to the target; False if there was none."""
        absolute = await asyncio.to_thread(os.path.abspath, path)
        record = await self._store.find(Path(absolute), bucket, key, self._endpoint)
        if record is None or record.state not in ACTIVE_STATES:
            return False
        await self._abort_record(record, credentials)
        return True

    # ------------------------------------------------------------------ stages

    async def _drive(
        self, client: S3Api, record: UploadRecord, credentials: Credentials, resumed: bool
    ) -> UploadResult:
        counters = _Counters()
        # A previous run may have sent Complete already (its answer died with it).
        complete_sent = record.state is UploadState.COMPLETING
        try:
            for _ in range(MAX_RESTARTS + 1):
                try:
                    record = await self._ensure_multipart(client, record)
                    await self._upload_parts(client, record, credentials, counters)
                    etag = await self._complete(client, record, credentials,
                                                sent_before=complete_sent)
                    break
                except UploadGoneError:
                    if complete_sent:
                        # The last run's Complete may have taken effect: then S3 holds the
                        # object rather than the upload.
                        with contextlib.suppress(UploadGoneError):
                            etag = await self._confirm_completed(client, record)
                            break
                    complete_sent = False
                    log.warning("%s: the multipart upload disappeared (NoSuchUpload); starting it again",
                                record.target)
                    await self._store.forget_parts(record.id)
                    record = await self._store.get(record.id)
            else:
                raise PermanentUploadError(
                    f"{record.target}: the multipart upload kept disappearing (NoSuchUpload "
                    f"{MAX_RESTARTS + 1} times); check the bucket's lifecycle rules"
                )
        except UploadError as exc:
            if aborts_upload(exc):
                await asyncio.shield(self._fail(client, record, str(exc)))
            raise
        confirmed = etag is not None
        await self._store.set_state(record.id, UploadState.COMPLETED,
                                    None if confirmed else "completion unconfirmed")
        record = await self._store.get(record.id)
        self._emit(UploadStateChanged(record.target, UploadState.COMPLETED,
                                      record.identity.size, record.identity.size))
        return self._result(record, etag or "", resumed, counters.sent, counters.resent,
                            confirmed=confirmed)

    async def _ensure_multipart(self, client: S3Api, record: UploadRecord) -> UploadRecord:
        if record.s3_upload_id:
            await self._reconcile(client, record)
            return record
        try:
            response = await self._create(client, record)
        except PermanentUploadError as exc:
            fallback = FALLBACK.get(record.algorithm)
            if (exc.code not in _ALGORITHM_REJECTED or fallback is None
                    or record.algorithm is not record.requested_algorithm):
                raise
            log.warning("%s: S3 rejected the %s checksum (%s); using %s instead", record.target,
                        record.algorithm.value, exc.code, fallback.value)
            await self._store.change_algorithm(record.id, fallback)
            record = await self._store.get(record.id)
            response = await self._create(client, record)
        await self._store.set_s3_upload_id(record.id, response["UploadId"])
        return await self._store.get(record.id)

    async def _create(self, client: S3Api, record: UploadRecord) -> dict[str, Any]:
        algorithm = record.algorithm
        options: dict[str, str] = {}
        if algorithm is not ChecksumAlgorithm.NONE:
            options["ChecksumAlgorithm"] = algorithm.value
        if algorithm.full_object:
            options["ChecksumType"] = "FULL_OBJECT"
        return await self._call(
            lambda: client.create_multipart_upload(Bucket=record.bucket, Key=record.key, **options),
            what=f"create the multipart upload for {record.target}", target=record.target,
        )

    async def _reconcile(self, client: S3Api, record: UploadRecord) -> None:
        """Adopt parts S3 holds but we never recorded (we died between its ack and our commit).

        Optional: without it, the parts in flight at the crash are simply sent again.
        """
        try:
            remote = await self._list_parts(client, record)
        except OperationDeniedError as exc:
            log.info("%s: resuming from our own acknowledgements (ListParts: %s); parts in "
                     "flight when the last run stopped are sent again", record.target, exc.code)
            return
        except _ListingLoop as exc:
            log.warning("%s: resuming from our own acknowledgements (%s)", record.target, exc)
            return
        local = [LocalPart(p.number, p.length, p.checksum, p.done)
                 for p in await self._store.parts(record.id)]
        found = reconcile(local, remote, record.algorithm.response_field)
        if found.adopt:
            await self._store.mark_parts_done(record.id, found.adopt)
        if found.lost:
            # S3 no longer has parts it acknowledged; they cannot be completed without re-sending.
            log.warning("%s: S3 lists no parts %s that it had acknowledged; sending them again",
                        record.target, found.lost[:10])
            await self._store.mark_parts_pending(record.id, found.lost)

    async def _list_parts(self, client: S3Api, record: UploadRecord) -> dict[int, dict[str, Any]]:
        """Every part S3 holds for the upload, by number (paged; a stuck marker is an error)."""
        remote: dict[int, dict[str, Any]] = {}
        marker = 0
        while True:
            page = await self._call(
                lambda m=marker: client.list_parts(  # type: ignore[misc]
                    Bucket=record.bucket, Key=record.key, UploadId=record.s3_upload_id,
                    PartNumberMarker=m, MaxParts=1000,
                ),
                what=f"list the uploaded parts of {record.target}",
            )
            for part in page.get("Parts", []):
                remote[int(part["PartNumber"])] = part
            if not page.get("IsTruncated"):
                return remote
            next_marker = int(page.get("NextPartNumberMarker") or 0)
            if next_marker <= marker:
                raise _ListingLoop(f"ListParts paging did not advance past part {marker}")
            marker = next_marker

    async def _upload_parts(
        self, client: S3Api, record: UploadRecord, credentials: Credentials, counters: _Counters
    ) -> None:
        await self._store.set_state(record.id, UploadState.UPLOADING)
        parts = await self._store.parts(record.id)
        pending = [p for p in parts if not p.done]
        done_bytes = sum(p.length for p in parts if p.done)
        if done_bytes and pending:
            self._emit(Notice(record.target, f"resuming: {len(parts) - len(pending)} of "
                                             f"{len(parts)} parts already uploaded"))
        self._emit(UploadStateChanged(record.target, UploadState.UPLOADING,
                                      record.identity.size, done_bytes))
        if not pending:
            return
        session = UploadSession(record.target, self._config.concurrency, self._config.retry,
                                uniform=self._uniform)
        fd = await _open_source(record.identity)
        try:
            slots = _PartSlots(self._config.concurrency, record.part_size)
            admitted = asyncio.Condition()
            try:
                async with asyncio.TaskGroup() as group:
                    for part in pending:
                        group.create_task(self._send_part(
                            client, record, part, fd, credentials, session, admitted, slots,
                            counters))
            except BaseExceptionGroup as group_error:
                raise most_significant(_leaves(group_error)) from None
        finally:
            os.close(fd)

    async def _admit(self, session: UploadSession, admitted: asyncio.Condition) -> None:
        """Wait until the session lets one more part go (a free slot, the link's pace)."""
        while True:
            async with admitted:
                wait = session.admission(self._monotonic())
                while wait is None:
                    await admitted.wait()
                    wait = session.admission(self._monotonic())
                if wait <= 0:
                    session.started()
                    return
            await self._sleep(wait)

    async def _send_part(
        self,
        client: S3Api,
        record: UploadRecord,
        part: PartRecord,
        fd: int,
        credentials: Credentials,
        session: UploadSession,
        admitted: asyncio.Condition,
        slots: _PartSlots,
        counters: _Counters,
    ) -> None:
        """Send one part until S3 acknowledges it; the session decides about each failure."""

        async def attempt() -> None:
            nonlocal part
            self._check_credentials(credentials, record)
            await self._admit(session, admitted)
            try:
                async with slots.buffer() as buffer, self._global_slot():
                    number, recorded = await self._store.start_attempt(record.id, part.number)
                    part = await self._read(fd, record, part, buffer)
                    progress = PartProgress()
                    request = client.upload_part(
                        Bucket=record.bucket, Key=record.key, UploadId=record.s3_upload_id,
                        PartNumber=part.number, ContentLength=part.length,
                        Body=PartStream(buffer, part.length, progress, self._throttle),
                        **record.algorithm.arguments(part.checksum),
                    )
                    try:
                        response = await self._watch(
                            request, progress, record, part.number, part.length,
                            sent_before=max(recorded, counters.sent_before.get(part.number, 0)),
                            counters=counters)
                    except Exception as exc:  # judged below, outside the slot
                        verdict = classify(exc)
                        await self._store.record_sent(
                            record.id, part.number, counters.sent_before.get(part.number, 0))
                    else:
                        await self._store.mark_part_done(record.id, part.number,
                                                         str(response["ETag"]))
                        self._emit(PartAcknowledged(record.target, part.number, part.length))
                        session.acknowledged(part.number)
                        await _wake(admitted)
                        return
                if verdict.kind == ErrorKind.BAD_DIGEST:
                    await self._check_unchanged(record, part)  # else: damaged in transit
            except BaseException:
                session.abandoned()  # cancelled, or the file or the database failed us
                await _wake(admitted)
                raise
            raise _AttemptFailed(verdict, number)

        async def decide(exc: Exception, _retry_number: int) -> float:
            if not isinstance(exc, _AttemptFailed):
                raise exc
            try:
                retry = session.failed(part.number, exc.verdict, self._monotonic())
            finally:
                await _wake(admitted)
            verdict = exc.verdict
            self._emit(PartRetried(record.target, part.number, verdict.reason, exc.attempt,
                                   error=verdict.message, delay_seconds=retry.delay))
            log.debug("%s part %d attempt %d failed (%s: %s); retrying", record.target,
                      part.number, exc.attempt, verdict.code, verdict.message)
            return retry.delay

        await self._retrier.run(attempt, decide)

    async def _read(
        self, fd: int, record: UploadRecord, part: PartRecord, buffer: bytearray
    ) -> PartRecord:
        """Read the part into ``buffer`` and check it against (or fix) its planned checksum."""
        checksum = await asyncio.to_thread(read_part, fd, part.part, buffer, record.algorithm)
        if checksum is None:
            raise SourceChangedError(record.identity.path, "the file is shorter than planned")
        if not part.checksum:  # first read: the checksum joins the plan before any byte is sent
            await self._store.set_part_checksum(record.id, part.number, checksum)
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

    async def _watch(
        self,
        request: Awaitable[T],
        progress: PartProgress,
        record: UploadRecord,
        part_number: int,
        part_length: int,
        *,
        sent_before: int,
        counters: _Counters,
    ) -> T:
        """Await ``request`` while bytes keep moving; cancel it after a stall.

        A byte counts as re-sent when an earlier attempt had sent it already (the part's first
        ``sent_before`` bytes), or when aiohttp sends it twice within this request (a dead
        keep-alive connection); the rest are sent for the first time. How far this attempt got
        is recorded every ``RECORD_STEP_BYTES`` (a quarter of smaller parts), so that after a
        restart only the bytes that really left count as re-sent, not whole parts.
        """
        step = min(RECORD_STEP_BYTES, max(1, part_length // 4))
        task = asyncio.ensure_future(request)
        first_total = resent_total = 0
        recorded = sent_before

        def report() -> int:
            """Emit what moved since the last report; returns how far into the part it got."""
            nonlocal first_total, resent_total
            sent, again, _ = progress.snapshot()
            reached = sent - again  # each offset of the part once
            first = reached - min(reached, sent_before)
            resent = sent - first
            for nbytes, is_resent in ((first - first_total, False), (resent - resent_total, True)):
                if nbytes > 0:
                    counters.add(nbytes, is_resent)
                    self._emit(BytesSent(record.target, nbytes, is_resent))
            first_total, resent_total = first, resent
            return reached

        stall = self._config.stall_timeout_seconds
        tick = min(WATCH_TICK_SECONDS, stall / 4)
        reached = 0
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=tick)
                reached = report()
                if done:
                    return task.result()
                if reached - recorded >= step:
                    await self._store.record_sent(record.id, part_number, reached)
                    recorded = reached
                _, _, last = progress.snapshot()
                if time.monotonic() - last > stall:
                    raise StallError(part_number, stall)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
            if not task.cancelled():
                task.exception()  # retrieved: the failure is reported through the caller
            reached = report()
            counters.sent_before[part_number] = max(
                counters.sent_before.get(part_number, 0), reached)

    async def _complete(
        self, client: S3Api, record: UploadRecord, credentials: Credentials, *, sent_before: bool
    ) -> str | None:
        """Complete the upload; its ETag, or None if it may be complete but nothing can confirm it."""
        current = await asyncio.to_thread(FileIdentity.of, record.identity.path)
        changed = record.identity.difference(current)
        if changed:
            raise SourceChangedError(record.identity.path, changed)
        parts = await self._store.parts(record.id)
        await self._store.set_state(record.id, UploadState.COMPLETING)
        self._emit(UploadStateChanged(record.target, UploadState.COMPLETING,
                                      record.identity.size, record.identity.size))
        listing = [
            {"PartNumber": p.number, "ETag": p.etag, **record.algorithm.arguments(p.checksum)}
            for p in parts
        ]
        whole: dict[str, str] = {}
        if record.algorithm.full_object:
            # S3 compares this with what it computed over the assembled object: end to end.
            full_checksum = _combined(record.algorithm, parts)
            await self._store.set_full_checksum(record.id, full_checksum)
            whole = {record.algorithm.s3_parameter: full_checksum, "ChecksumType": "FULL_OBJECT"}
        attempts = 0

        async def complete(patient: Any) -> dict[str, Any]:
            nonlocal attempts
            attempts += 1
            answer: dict[str, Any] = await patient.complete_multipart_upload(
                Bucket=record.bucket, Key=record.key, UploadId=record.s3_upload_id,
                MultipartUpload={"Parts": listing}, **whole,
            )
            return answer

        try:
            async with self._open_s3(self._config, credentials,
                                     COMPLETE_READ_TIMEOUT_SECONDS) as patient:
                response = await self._call(lambda: complete(patient), what=f"complete {record.target}",
                                            deadline_seconds=COMPLETE_TIMEOUT_SECONDS,
                                            target=record.target)
        except UploadGoneError:
            if not (sent_before or attempts > 1):
                raise  # nothing of ours completed it: the upload really is gone
            # A retried Complete whose first try succeeded answers NoSuchUpload: check the object.
            return await self._confirm_completed(client, record)
        return str(response.get("ETag", ""))

    async def _confirm_completed(self, client: S3Api, record: UploadRecord) -> str | None:
        """After NoSuchUpload to a repeated Complete: the object's ETag, or None if unknowable."""
        try:
            head = await self._call(
                lambda: client.head_object(Bucket=record.bucket, Key=record.key),
                what=f"check {record.target}",
            )
        except OperationDeniedError:
            log.warning("%s: S3 no longer knows the upload after a Complete whose answer was lost, "
                        "and HeadObject is not allowed to confirm the object; taking it as "
                        "complete", record.target)
            return None
        except PermanentUploadError:
            head = {}
        if int(head.get("ContentLength", -1)) != record.identity.size:
            raise UploadGoneError(f"{record.target}: the upload is gone and no complete object "
                                  "of the right size is there")
        return str(head.get("ETag", ""))

    # ------------------------------------------------------------------ helpers

    async def _call(
        self, make: Callable[[], Awaitable[T]], *, what: str, deadline_seconds: float | None = None,
        target: str = "",
    ) -> T:
        """Run a non-part S3 call, retrying transient failures with the engine's policy."""
        # Silence is caught sooner, by the client's read timeout (= the stall timeout); this
        # deadline only backs it up.
        deadline = deadline_seconds or self._config.stall_timeout_seconds * 2

        async def attempt() -> T:
            async with asyncio.timeout(deadline):
                return await make()

        def decide(exc: Exception, retry_number: int) -> float:
            verdict = classify(exc)
            stop = stop_error(verdict, f"could not {what}")
            if stop is not None:
                raise stop from None
            if self._retrier.gives_up_after(retry_number + 1):
                raise TransientUploadError(f"could not {what}: {verdict.code}: {verdict.message}",
                                           reason=verdict.reason) from None
            log.debug("could not %s (%s); retrying", what, verdict.code)
            delay = self._retrier.delay(retry_number,
                                        throttled=verdict.reason is RetryReason.THROTTLED)
            self._emit(Retrying(target, "S3", verdict.message, "next attempt", delay))
            return delay

        return await self._retrier.run(attempt, decide)

    def _check_credentials(self, credentials: Credentials, record: UploadRecord) -> None:
        left = credentials.seconds_left(self._now())
        if left is not None and left <= 0:
            raise CredentialsExpiredError(
                f"{record.target}: the upload credentials expired; new credentials are needed"
            )

    @contextlib.asynccontextmanager
    async def _global_slot(self) -> Any:
        if self._part_slots is None:
            yield
            return
        async with self._part_slots:
            yield

    async def _fail(self, client: S3Api, record: UploadRecord, reason: str) -> None:
        """Abort the multipart upload (frees S3 storage) and record why; never raises."""
        with contextlib.suppress(Exception):
            if record.s3_upload_id:
                await self._abort_remote(client, record)
        await self._store.set_state(record.id, UploadState.FAILED, reason)
        self._emit(UploadStateChanged(record.target, UploadState.FAILED, record.identity.size, 0, reason))

    async def _abort_record(self, record: UploadRecord, credentials: Credentials) -> None:
        if record.s3_upload_id:
            async with self._open_s3(self._config, credentials, None) as client:
                await asyncio.shield(self._abort_remote(client, record))
        await self._store.set_state(record.id, UploadState.ABORTED, "aborted")
        self._emit(UploadStateChanged(record.target, UploadState.ABORTED, record.identity.size, 0))

    async def _abort_remote(self, client: S3Api, record: UploadRecord) -> None:
        """Abort the multipart upload (transient failures retried by ``_call``); never raises.

        No part can land after it: the engine aborts only once its own part tasks are over.
        Bounded in time: a failing upload must not hang on a dead link for the sake of cleanup.
        """
        try:
            async with asyncio.timeout(ABORT_DEADLINE_SECONDS):
                await self._call(
                    lambda: client.abort_multipart_upload(
                        Bucket=record.bucket, Key=record.key, UploadId=record.s3_upload_id
                    ),
                    what=f"abort {record.target}",
                )
        except TimeoutError:
            log.warning("%s: could not abort within %.0f s; S3 frees the parts when the bucket's "
                        "lifecycle rule expires them", record.target, ABORT_DEADLINE_SECONDS)
        except OperationDeniedError:
            log.info("%s: AbortMultipartUpload is not allowed; S3 frees the parts when the "
                     "bucket's lifecycle rule expires them", record.target)
        except UploadError as exc:  # NoSuchUpload: already gone; anything else: nothing to do
            log.debug("%s: abort: %s", record.target, exc)

    def _result(self, record: UploadRecord, etag: str, resumed: bool, sent: int, resent: int,
                *, confirmed: bool = True) -> UploadResult:
        return UploadResult(
            bucket=record.bucket, key=record.key, size=record.identity.size,
            sha256=record.sha256 or "", etag=etag, part_count=record.plan.part_count,
            resumed=resumed, bytes_sent=sent, bytes_resent=resent,
            checksum=record.full_checksum or "", checksum_algorithm=record.algorithm.value,
            confirmed=confirmed,
        )


def _open_real_s3(
    config: EngineConfig, credentials: Credentials, read_timeout_seconds: float | None
) -> contextlib.AbstractAsyncContextManager[S3Api]:
    return open_s3_client(config, credentials, read_timeout_seconds=read_timeout_seconds)


def _same_bytes(record: UploadRecord, digest: FileDigest | None, identity: FileIdentity) -> bool:
    """Whether ``digest`` (a hash of the file as it is now) proves it holds ``record``'s bytes."""
    return (digest is not None and record.sha256 is not None and digest.sha256 == record.sha256
            and digest.identity.path == identity.path
            and digest.identity.difference(identity) is None
            and identity.size == record.identity.size)


async def _open_source(identity: FileIdentity) -> int:
    """Open the file being uploaded for reading, checking it is still the one planned.

    The one place the engine opens the source: every part is read from this descriptor. No
    symlink, a regular file, inside the allowed roots (when confined), the very file hashed.
    """
    return await asyncio.to_thread(open_source, identity.path, identity)



def _combined(algorithm: ChecksumAlgorithm, parts: list[PartRecord]) -> str:
    """The whole object's checksum, combined from its parts' (no second read of the file)."""
    value = 0
    for part in parts:
        value = algorithm.combine(value, algorithm.from_wire(part.checksum), part.length)
    return algorithm.to_wire(value)


class _PartSlots:
    """At most ``count`` parts in flight, each with a reusable buffer of ``size`` bytes.

    Buffers are allocated on first use and kept: re-allocating 16 MiB per part would cost
    thousands of page faults per part.
    """

    def __init__(self, count: int, size: int) -> None:
        self._limit = asyncio.Semaphore(count)
        self._free: list[bytearray] = []
        self._size = size

    @contextlib.asynccontextmanager
    async def buffer(self) -> AsyncIterator[bytearray]:
        async with self._limit:
            buffer = self._free.pop() if self._free else bytearray(self._size)
            try:
                yield buffer
            finally:
                self._free.append(buffer)


async def _wake(admitted: asyncio.Condition) -> None:
    """A slot may have freed up: let waiting parts re-check their admission."""
    async with admitted:
        admitted.notify_all()


class _AttemptFailed(Exception):
    """One attempt of a part failed; carries the verdict to the session's decision."""

    def __init__(self, verdict: Classified, attempt: int) -> None:
        super().__init__(f"{verdict.code}: {verdict.message}")
        self.verdict = verdict
        self.attempt = attempt


class _ListingLoop(Exception):
    """ListParts paging that does not advance (a server bug): the listing cannot be trusted."""


class _Counters:
    def __init__(self) -> None:
        self.sent = 0
        self.resent = 0
        self.sent_before: dict[int, int] = {}  # part -> most of it any attempt has sent

    def add(self, nbytes: int, resent: bool) -> None:
        self.sent += nbytes
        if resent:
            self.resent += nbytes


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    leaves: list[BaseException] = []
    for exc in group.exceptions:
        leaves.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return leaves
