"""The engine's S3 calls other than UploadPart, each retried with the engine's policy.

CreateMultipartUpload, ListParts (paged), CompleteMultipartUpload (with the check that a Complete
whose answer was lost took effect), HeadObject and AbortMultipartUpload. Each goes through
``S3Calls.call``: every attempt first checks the run's fence (``uploader.fence``); transient failures are retried with capped, jittered back-off (a ``Retrying``
event each time), and the failure table (``upload_session.FAILURES``) turns the others into the
engine's errors. The calls an upload can do without (ListParts, AbortMultipartUpload, HeadObject)
raise ``OperationDeniedError`` when S3 refuses them; their callers decide to go on without.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from uploader.config import EngineConfig
from uploader.credentials import Credentials
from uploader.database import StateError
from uploader.errors import (
    LeaseLost,
    OperationDeniedError,
    PermanentUploadError,
    TransientUploadError,
    UploadError,
    UploadGoneError,
)
from uploader.events import Emitter, Retrying, RetryReason
from uploader.hashing import ChecksumAlgorithm
from uploader.retry import Retrier
from uploader.s3api import S3Api, S3Opener
from uploader.s3client import classify
from uploader.upload_session import stop_error
from uploader.upload_state import UploadRecord

log = logging.getLogger("uploader.engine")  # the engine's one logger, whichever module logs
T = TypeVar("T")

# CompleteMultipartUpload may legitimately take minutes on a large object (S3 keeps the
# connection alive with whitespace), so it gets a long backstop instead of the stall timeout,
# and a client whose read timeout outlasts the gaps between S3's keep-alive whitespace.
COMPLETE_TIMEOUT_SECONDS = 900.0
COMPLETE_READ_TIMEOUT_SECONDS = 300.0
# The longest an abort (cleanup after a failure, or the user's cancel) may take.
ABORT_DEADLINE_SECONDS = 120.0


class ListingLoop(Exception):
    """ListParts paging that does not advance (a server bug): the listing cannot be trusted."""


class S3Calls:
    """The non-part S3 calls of every upload of one engine. One event loop."""

    def __init__(self, config: EngineConfig, retrier: Retrier, emit: Emitter,
                 open_s3: S3Opener, guard: Callable[[], Awaitable[None]]) -> None:
        self._config = config
        self._guard = guard  # before every attempt: LeaseLost if the run's fence lost its hold
        self._retrier = retrier
        self._emit = emit
        self._open_s3 = open_s3

    async def call(
        self, make: Callable[[], Awaitable[T]], *, what: str, deadline_seconds: float | None = None,
        target: str = "",
    ) -> T:
        """Run a non-part S3 call, retrying transient failures with the engine's policy."""
        # Silence is caught sooner, by the client's read timeout (= the stall timeout); this
        # deadline only backs it up.
        deadline = deadline_seconds or self._config.stall_timeout_seconds * 2

        async def attempt() -> T:
            await self._guard()
            async with asyncio.timeout(deadline):
                return await make()

        def decide(exc: Exception, retry_number: int) -> float:
            if isinstance(exc, LeaseLost | StateError):
                raise exc  # not S3's failure: nothing to retry here
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

    async def create(self, client: S3Api, record: UploadRecord) -> str:
        """CreateMultipartUpload with the record's checksum; the new upload's id."""
        algorithm = record.algorithm
        options: dict[str, str] = {}
        if algorithm is not ChecksumAlgorithm.NONE:
            options["ChecksumAlgorithm"] = algorithm.value
        if algorithm.full_object:
            options["ChecksumType"] = "FULL_OBJECT"
        response = await self.call(
            lambda: client.create_multipart_upload(Bucket=record.bucket, Key=record.key, **options),
            what=f"create the multipart upload for {record.target}", target=record.target,
        )
        return str(response["UploadId"])

    async def list_parts(self, client: S3Api, record: UploadRecord) -> dict[int, dict[str, Any]]:
        """Every part S3 holds for the upload, by number (paged; a stuck marker is an error)."""
        remote: dict[int, dict[str, Any]] = {}
        marker = 0
        while True:
            page = await self.call(
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
                raise ListingLoop(f"ListParts paging did not advance past part {marker}")
            marker = next_marker

    async def complete(
        self, client: S3Api, record: UploadRecord, credentials: Credentials,
        arguments: dict[str, Any], *, sent_before: bool,
    ) -> str | None:
        """CompleteMultipartUpload (``arguments``: the part listing, the whole-object checksum); the
        object's ETag, or None if it may be complete but nothing can confirm it."""
        attempts = 0

        async def complete(patient: S3Api) -> dict[str, Any]:
            nonlocal attempts
            attempts += 1
            return await patient.complete_multipart_upload(
                Bucket=record.bucket, Key=record.key, UploadId=record.s3_upload_id, **arguments)

        try:
            async with self._open_s3(self._config, credentials,
                                     COMPLETE_READ_TIMEOUT_SECONDS) as patient:
                response = await self.call(lambda: complete(patient), what=f"complete {record.target}",
                                           deadline_seconds=COMPLETE_TIMEOUT_SECONDS,
                                           target=record.target)
        except UploadGoneError:
            if not (sent_before or attempts > 1):
                raise  # nothing of ours completed it: the upload really is gone
            # A retried Complete whose first try succeeded answers NoSuchUpload: check the object.
            return await self.confirm_completed(client, record)
        return str(response.get("ETag", ""))

    async def confirm_completed(self, client: S3Api, record: UploadRecord) -> str | None:
        """After NoSuchUpload to a repeated Complete: the object's ETag, or None if unknowable."""
        try:
            head = await self.call(
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

    async def abort(self, client: S3Api, record: UploadRecord) -> None:
        """Abort the multipart upload (transient failures retried by ``call``); never raises.

        No part can land after it: the engine aborts only once its own part tasks are over.
        Bounded in time: a failing upload must not hang on a dead link for the sake of cleanup.
        """
        try:
            async with asyncio.timeout(ABORT_DEADLINE_SECONDS):
                await self.call(
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
