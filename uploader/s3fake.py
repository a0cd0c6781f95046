"""An in-memory S3 multipart store that injects faults: the engine's fast test double.

It keeps real semantics where the engine depends on them (UploadId lifecycle, NoSuchUpload after
Complete or Abort, per-part checksums checked against the bytes received, ListParts paging,
the assembled object) and lets a test script failures per operation:

* ``fail(operation, error, times=n)``: the next ``n`` calls raise ``error`` (use ``s3_error``
  for an S3 answer, or any exception such as ``ConnectionResetError``);
* ``lose_answer(operation, times=n)``: the call takes effect, then raises a reset (the client
  cannot know it succeeded);
* ``deny(*operations)``: 403 AccessDenied, like credentials scoped to s3:PutObject;
* ``outage``: while true, every UploadPart reads part of its body and then fails with a reset;
* ``flaky_parts(p, seed)``: each UploadPart is reset mid-body with probability ``p``;
* ``reject_algorithms``: CreateMultipartUpload answers 400 InvalidRequest for these checksums;
* ``hold_parts(after_bytes)``: every UploadPart stops reading its body there until
  ``release_parts()`` (parts caught half-way on the wire, for a kill).

``UploadPart`` consumes its body through the engine's ``PartStream`` (so progress, byte counts
and re-sent accounting are exercised) and yields to the event loop between slices, so parts
interleave as they would on sockets. Nothing sleeps: tests run in milliseconds.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import random
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from awscrt import checksums
from botocore.exceptions import ClientError

from uploader.config import EngineConfig
from uploader.credentials import Credentials

_STATUS = {"AccessDenied": 403, "NoSuchUpload": 404, "NoSuchKey": 404, "InvalidRequest": 400,
           "InvalidArgument": 400, "NotImplemented": 501, "RequestTimeout": 400,
           "SlowDown": 503, "InternalError": 500, "ExpiredToken": 400, "BadDigest": 400,
           "InvalidPart": 400}


def s3_error(code: str, operation: str = "S3", message: str = "") -> ClientError:
    """The exception botocore raises for an S3 error answer with this code."""
    return ClientError({"Error": {"Code": code, "Message": message or code},
                        "ResponseMetadata": {"HTTPStatusCode": _STATUS.get(code, 400)}},
                       operation)


def _checksum(algorithm: str, data: bytes) -> str:
    if algorithm == "CRC64NVME":
        return base64.b64encode(checksums.crc64nvme(data).to_bytes(8, "big")).decode()
    if algorithm == "CRC32C":
        return base64.b64encode(checksums.crc32c(data).to_bytes(4, "big")).decode()
    if algorithm == "CRC32":
        return base64.b64encode(checksums.crc32(data).to_bytes(4, "big")).decode()
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def _answer(lost: bool, response: dict[str, Any]) -> dict[str, Any]:
    """The call took effect; its answer reaches the client unless it was scripted to be lost."""
    if lost:
        raise ConnectionResetError("answer lost")
    return response


@dataclass
class _Upload:
    key: str
    algorithm: str | None
    parts: dict[int, tuple[bytes, str]] = field(default_factory=dict)  # number -> (data, etag)


class InMemoryS3:
    """One bucket's worth of multipart uploads; see the module docstring. One event loop."""

    def __init__(self, *, list_page_size: int = 1000) -> None:
        self.objects: dict[str, bytes] = {}
        self.calls: Counter[str] = Counter()
        self.body_bytes_received = 0
        self.outage = False
        self.reject_algorithms: set[str] = set()
        self.list_page_size = list_page_size
        self.stuck_listing = False  # ListParts returns the same marker for ever
        self._reset_probability = 0.0
        self._rng = random.Random(0)
        self._uploads: dict[str, _Upload] = {}
        self._ids = itertools.count(1)
        self._faults: dict[str, list[BaseException | None]] = {}
        self._denied: set[str] = set()
        self._hold: asyncio.Event | None = None
        self._hold_after = 0

    # -- scripting ------------------------------------------------------------------------

    def fail(self, operation: str, error: BaseException, *, times: int = 1) -> None:
        self._faults.setdefault(operation, []).extend([error] * times)

    def lose_answer(self, operation: str, *, times: int = 1) -> None:
        self._faults.setdefault(operation, []).extend([None] * times)

    def flaky_parts(self, probability: float, *, seed: int = 0) -> None:
        self._reset_probability = probability
        self._rng = random.Random(seed)

    def deny(self, *operations: str) -> None:
        self._denied.update(operations)

    def hold_parts(self, after_bytes: int) -> None:
        """Every part upload stops taking its body after ``after_bytes`` until ``release_parts``."""
        self._hold, self._hold_after = asyncio.Event(), after_bytes

    def release_parts(self) -> None:
        if self._hold is not None:
            self._hold.set()
        self._hold = None

    @contextlib.asynccontextmanager
    async def open(self, _config: EngineConfig, _credentials: Credentials,
                   _read_timeout: float | None = None) -> AsyncIterator[InMemoryS3]:
        """An ``S3Opener``: every client is this store."""
        yield self

    # -- operations -----------------------------------------------------------------------

    def _enter(self, operation: str) -> bool:
        """Count the call, raise a scripted fault; True if the answer is to be lost."""
        self.calls[operation] += 1
        if operation in self._denied:
            raise s3_error("AccessDenied", operation, "Access Denied")
        queue = self._faults.get(operation)
        if queue:
            fault = queue.pop(0)
            if fault is None:
                return True
            raise fault
        return False

    def _upload(self, upload_id: str, operation: str) -> _Upload:
        upload = self._uploads.get(upload_id)
        if upload is None:
            raise s3_error("NoSuchUpload", operation, "The specified upload does not exist.")
        return upload

    def _enter_upload(self, operation: str, kw: dict[str, Any]) -> tuple[bool, _Upload]:
        """``_enter`` for a call on an existing multipart upload: (answer lost?, the upload)."""
        lost = self._enter(operation)
        return lost, self._upload(kw["UploadId"], operation)

    async def create_multipart_upload(self, **kw: Any) -> dict[str, Any]:
        lost = self._enter("CreateMultipartUpload")
        algorithm = kw.get("ChecksumAlgorithm")
        if algorithm in self.reject_algorithms:
            raise s3_error("InvalidRequest", "CreateMultipartUpload",
                           f"Checksum algorithm {algorithm} is not supported")
        upload_id = f"upload-{next(self._ids)}"
        self._uploads[upload_id] = _Upload(kw["Key"], algorithm)
        return _answer(lost, {"UploadId": upload_id})

    async def upload_part(self, **kw: Any) -> dict[str, Any]:
        lost, upload = self._enter_upload("UploadPart", kw)
        reset = self.outage or self._rng.random() < self._reset_probability
        received = bytearray()
        async for piece in kw["Body"]:
            received += piece
            self.body_bytes_received += len(piece)
            if reset and len(received) >= len(kw["Body"]) // 2:
                raise ConnectionResetError("connection reset by peer")
            if self._hold is not None and len(received) >= self._hold_after:
                await self._hold.wait()
            await asyncio.sleep(0)  # let other parts interleave, as sockets would
        data = bytes(received)
        if upload.algorithm is not None:
            sent = kw.get(f"Checksum{upload.algorithm}")
            if sent is not None and sent != _checksum(upload.algorithm, data):
                raise s3_error("BadDigest", "UploadPart")
        etag = f'"{hashlib.md5(data).hexdigest()}"'
        upload.parts[int(kw["PartNumber"])] = (data, etag)
        return _answer(lost, {"ETag": etag})

    async def complete_multipart_upload(self, **kw: Any) -> dict[str, Any]:
        lost, upload = self._enter_upload("CompleteMultipartUpload", kw)
        listing = kw["MultipartUpload"]["Parts"]
        chunks = []
        for item in listing:
            held = upload.parts.get(int(item["PartNumber"]))
            if held is None or held[1] != item["ETag"]:
                raise s3_error("InvalidPart", "CompleteMultipartUpload")
            chunks.append(held[0])
        self.objects[upload.key] = b"".join(chunks)
        del self._uploads[kw["UploadId"]]
        return _answer(lost, {"ETag": f'"{hashlib.md5(self.objects[upload.key]).hexdigest()}-{len(listing)}"'})

    async def list_parts(self, **kw: Any) -> dict[str, Any]:
        _, upload = self._enter_upload("ListParts", kw)
        marker = int(kw.get("PartNumberMarker") or 0)
        numbers = sorted(n for n in upload.parts if n > marker)
        page = numbers[: self.list_page_size]
        parts = [{"PartNumber": n, "Size": len(upload.parts[n][0]), "ETag": upload.parts[n][1],
                  **({f"Checksum{upload.algorithm}": _checksum(upload.algorithm, upload.parts[n][0])}
                     if upload.algorithm else {})}
                 for n in page]
        truncated = len(numbers) > len(page)
        next_marker = marker if self.stuck_listing else (page[-1] if page else marker)
        return {"Parts": parts, "IsTruncated": truncated, "NextPartNumberMarker": next_marker}

    async def abort_multipart_upload(self, **kw: Any) -> dict[str, Any]:
        self._enter_upload("AbortMultipartUpload", kw)
        del self._uploads[kw["UploadId"]]
        return {}

    async def head_object(self, **kw: Any) -> dict[str, Any]:
        self._enter("HeadObject")
        data = self.objects.get(kw["Key"])
        if data is None:
            raise s3_error("NoSuchKey", "HeadObject")
        return {"ContentLength": len(data), "ETag": f'"{hashlib.md5(data).hexdigest()}"'}

    @property
    def open_uploads(self) -> int:
        return len(self._uploads)
