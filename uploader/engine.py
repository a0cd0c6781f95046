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

Errors are classified in one place (``s3client.classify``) and judged by one table
(``upload_session.FAILURES``): transient ones are retried per part with capped, fully jittered
exponential back-off for as long as the credentials are valid; ExpiredToken surfaces as
``CredentialsExpiredError`` (the notary layer gets a new submission); NoSuchUpload restarts the
multipart upload; a changed source or a permanent refusal aborts it.
Optional calls (ListParts, AbortMultipartUpload, HeadObject) that S3 refuses never fail an upload
and never trigger an abort.
Fencing (``uploader.fence``): inside a fenced run every write of the upload's rows and every S3
call first checks the caller's fence; one that no longer holds raises ``LeaseLost``, which ends
the run at once without aborting (the upload belongs to whoever took it over).
Cancellation (Ctrl-C, SIGTERM, a daemon shutdown) does *not* abort: that is what resume is for.
``abort()`` is the explicit user cancel.

This module is the driver (steps 1, 2, 3's bookkeeping, 5 and 6); ``part_phase`` runs step 4
(admission, attempts, the stall watchdog) and ``s3calls`` the other S3 calls.

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
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uploader.config import EngineConfig
from uploader.credentials import Credentials
from uploader.database import Database
from uploader.errors import (
    OperationDeniedError,
    PermanentUploadError,
    SourceChangedError,
    UploadError,
    UploadGoneError,
)
from uploader.events import Emitter, Hook, UploadStateChanged
from uploader.hashing import FALLBACK, ChecksumAlgorithm, FileDigest
from uploader.lifecycle import UploadState
from uploader.part_phase import Counters, PartPhase
from uploader.planning import plan_upload
from uploader.retry import Retrier
from uploader.s3api import S3Api, S3Opener
from uploader.s3calls import ListingLoop, S3Calls
from uploader.s3client import open_s3_client
from uploader.source_file import FileIdentity
from uploader.throttle import Throttle
from uploader.upload_session import LocalPart, aborts_upload, reconcile
from uploader.upload_state import ACTIVE_STATES, PartRecord, UploadRecord, UploadStore

log = logging.getLogger(__name__)

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
        self._config = config
        self._emit = Emitter(hooks)
        self._open_s3: S3Opener = s3 or _open_real_s3
        retrier = Retrier(config.retry, sleep, uniform)
        self._s3 = S3Calls(config, retrier, self._emit, self._open_s3, self._store.check_fence)
        self._parts = PartPhase(config, self._store, self._emit, retrier, part_slots=part_slots,
                                throttle=throttle, sleep=sleep, uniform=uniform, now=now,
                                monotonic=monotonic)

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
        record = await self._store.find(identity.path, bucket, key, self._endpoint)
        if record is not None:
            record = await self._resumable(record, identity, digest, credentials, restart=restart)
        if record is not None and record.state is UploadState.COMPLETED:
            return self._result(record, etag="", resumed=True, sent=0, resent=0)
        resumed = record is not None
        if record is None:
            record = await self._plan(identity, bucket, key, digest)
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

    async def _resumable(
        self, record: UploadRecord, identity: FileIdentity, digest: FileDigest | None,
        credentials: Credentials, *, restart: bool,
    ) -> UploadRecord | None:
        """The earlier upload of the file to go on with (COMPLETED: nothing left to do), or
        None to plan a new one."""
        changed = record.identity.difference(identity)
        if changed and record.state in ACTIVE_STATES and _same_bytes(record, digest, identity):
            # Another file with the very bytes this upload was planned for (a zip made
            # again after the last run's was removed): its parts already sent still hold.
            record = await self._store.adopt_file(record.id, identity)
            changed = None
        if record.state is UploadState.COMPLETED and not changed:
            return record
        if record.state not in ACTIVE_STATES:
            return None
        if changed and not restart:
            raise SourceChangedError(
                identity.path, f"{changed} since the unfinished upload to {record.target} began; "
                "re-run with --restart to upload the new contents from the beginning"
            )
        if changed:
            await self._abort_record(record, credentials)
            return None
        return record

    async def _plan(self, identity: FileIdentity, bucket: str, key: str,
                    digest: FileDigest | None) -> UploadRecord:
        """Record a new upload of the file, with ``digest``'s checksums when it fits the plan."""
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
        return await self._store.create(identity, plan.part_size, algorithm, bucket, key,
                                        self._endpoint, digest)

    async def _drive(
        self, client: S3Api, record: UploadRecord, credentials: Credentials, resumed: bool
    ) -> UploadResult:
        counters = Counters()
        # A previous run may have sent Complete already (its answer died with it).
        complete_sent = record.state is UploadState.COMPLETING
        try:
            for _ in range(MAX_RESTARTS + 1):
                try:
                    record = await self._ensure_multipart(client, record)
                    record = await self._parts.run(client, record, credentials, counters)
                    record, etag = await self._complete(client, record, credentials,
                                                        sent_before=complete_sent)
                    break
                except UploadGoneError:
                    if complete_sent:
                        # The last run's Complete may have taken effect: then S3 holds the
                        # object rather than the upload.
                        with contextlib.suppress(UploadGoneError):
                            etag = await self._s3.confirm_completed(client, record)
                            break
                    complete_sent = False
                    log.warning("%s: the multipart upload disappeared (NoSuchUpload); starting it again",
                                record.target)
                    record = await self._store.forget_parts(record.id)
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
        record = await self._store.set_state(record.id, UploadState.COMPLETED,
                                             None if confirmed else "completion unconfirmed")
        self._emit(UploadStateChanged(record.target, UploadState.COMPLETED,
                                      record.identity.size, record.identity.size))
        return self._result(record, etag or "", resumed, counters.sent, counters.resent,
                            confirmed=confirmed)

    async def _ensure_multipart(self, client: S3Api, record: UploadRecord) -> UploadRecord:
        if record.s3_upload_id:
            await self._reconcile(client, record)
            return record
        try:
            upload_id = await self._s3.create(client, record)
        except PermanentUploadError as exc:
            fallback = FALLBACK.get(record.algorithm)
            if (exc.code not in _ALGORITHM_REJECTED or fallback is None
                    or record.algorithm is not record.requested_algorithm):
                raise
            log.warning("%s: S3 rejected the %s checksum (%s); using %s instead", record.target,
                        record.algorithm.value, exc.code, fallback.value)
            record = await self._store.change_algorithm(record.id, fallback)
            upload_id = await self._s3.create(client, record)
        return await self._store.set_s3_upload_id(record.id, upload_id)

    async def _reconcile(self, client: S3Api, record: UploadRecord) -> None:
        """Adopt parts S3 holds but we never recorded (we died between its ack and our commit).

        Optional: without it, the parts in flight at the crash are simply sent again.
        """
        try:
            remote = await self._s3.list_parts(client, record)
        except OperationDeniedError as exc:
            log.info("%s: resuming from our own acknowledgements (ListParts: %s); parts in "
                     "flight when the last run stopped are sent again", record.target, exc.code)
            return
        except ListingLoop as exc:
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

    async def _complete(
        self, client: S3Api, record: UploadRecord, credentials: Credentials, *, sent_before: bool
    ) -> tuple[UploadRecord, str | None]:
        """Complete the upload: the upload as recorded then, and its ETag (None if it may be
        complete but nothing can confirm it)."""
        current = await asyncio.to_thread(FileIdentity.of, record.identity.path)
        changed = record.identity.difference(current)
        if changed:
            raise SourceChangedError(record.identity.path, changed)
        parts = await self._store.parts(record.id)
        record = await self._store.set_state(record.id, UploadState.COMPLETING)
        self._emit(UploadStateChanged(record.target, UploadState.COMPLETING,
                                      record.identity.size, record.identity.size))
        arguments: dict[str, Any] = {"MultipartUpload": {"Parts": [
            {"PartNumber": p.number, "ETag": p.etag, **record.algorithm.arguments(p.checksum)}
            for p in parts
        ]}}
        if record.algorithm.full_object:
            # S3 compares this with what it computed over the assembled object: end to end.
            full_checksum = _combined(record.algorithm, parts)
            record = await self._store.set_full_checksum(record.id, full_checksum)
            arguments |= {record.algorithm.s3_parameter: full_checksum,
                          "ChecksumType": "FULL_OBJECT"}
        etag = await self._s3.complete(client, record, credentials, arguments,
                                       sent_before=sent_before)
        return record, etag

    # ------------------------------------------------------------------ helpers

    async def _fail(self, client: S3Api, record: UploadRecord, reason: str) -> None:
        """Abort the multipart upload (frees S3 storage) and record why; never raises."""
        with contextlib.suppress(Exception):
            if record.s3_upload_id:
                await self._s3.abort(client, record)
        await self._store.set_state(record.id, UploadState.FAILED, reason)
        self._emit(UploadStateChanged(record.target, UploadState.FAILED, record.identity.size, 0, reason))

    async def _abort_record(self, record: UploadRecord, credentials: Credentials) -> None:
        if record.s3_upload_id:
            async with self._open_s3(self._config, credentials, None) as client:
                await asyncio.shield(self._s3.abort(client, record))
        await self._store.set_state(record.id, UploadState.ABORTED, "aborted")
        self._emit(UploadStateChanged(record.target, UploadState.ABORTED, record.identity.size, 0))

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


def _combined(algorithm: ChecksumAlgorithm, parts: list[PartRecord]) -> str:
    """The whole object's checksum, combined from its parts' (no second read of the file)."""
    value = 0
    for part in parts:
        value = algorithm.combine(value, algorithm.from_wire(part.checksum), part.length)
    return algorithm.to_wire(value)
