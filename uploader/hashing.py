"""One streamed pass over the archive: whole-file SHA-256 plus every part's checksum.

The notary service needs the SHA-256 before it issues upload credentials, and the multipart
upload needs a checksum per part; reading 20 GB twice would double the cost, so both are
computed from the same reads, on a worker thread (never on the event loop), into one reused
buffer (no allocation per read).

Checksum: **CRC64NVME, full object** (``x-amz-checksum-crc64nvme``, ``ChecksumType
FULL_OBJECT``), computed with awscrt. S3 verifies each part's CRC64NVME on arrival, and at
CompleteMultipartUpload checks one value for the *whole archive* that we computed from the file
itself: an end-to-end proof that S3 holds exactly our bytes, which composite checksums
(a checksum of part checksums) do not give. The whole-file value is combined from the per-part
values (``combine_crc64nvme``), so it costs nothing extra and survives resume.

CPU cost measured on this project's CI machine kind (2 vCPU AMD EPYC, SHA-NI, VPCLMULQDQ;
256 MiB in memory, best of 3): SHA-256 0.595 CPU-s/GiB, MD5 (Content-MD5) 1.404, zlib CRC32
0.254, awscrt CRC32C 0.051, awscrt CRC64NVME 0.051. SHA-256 (which the notary service requires)
dominates; the part checksums add < 10 %.

The algorithm is a setting (``NOTARYD_CHECKSUM``): ``crc64nvme`` (default), ``crc32c``, ``crc32``
(composite: S3 checks each part, and a checksum of the part checksums), ``sha256`` (composite,
~0.6 CPU-s/GiB more) and ``none`` (no checksum header: only TLS protects the bytes). A store that
rejects the algorithm at CreateMultipartUpload gets the next one in ``FALLBACK`` (see engine).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from uploader.buffers import page_aligned
from uploader.checksum import DEFAULT_ALGORITHM, FALLBACK, ChecksumAlgorithm, PartHasher
from uploader.errors import SourceChangedError
from uploader.planning import Part, UploadPlan
from uploader.source_file import FileIdentity, opened_source

__all__ = ["DEFAULT_ALGORITHM", "FALLBACK", "ChecksumAlgorithm", "FileDigest", "PartHasher",
           "RunningDigest", "hash_file", "hash_file_sync", "part_checksum_sync"]

READ_SIZE = 8 * 1024 * 1024
PROGRESS_EVERY = 64 * 1024 * 1024


# Reads at least this large are hashed with SHA-256 on a second thread while the calling thread
# takes the part checksums (hashing pass: ~12 % less wall time than one after the other).
ALONGSIDE_FROM_BYTES = 1024 * 1024


@functools.cache
def _alongside() -> ThreadPoolExecutor:
    """Threads for SHA-256 beside a pass's own thread, one per pass at a time (for the process:
    idle threads cost nothing and exit with it)."""
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="sha256")


@dataclass(frozen=True)
class FileDigest:
    identity: FileIdentity
    sha256: str  # hex
    part_size: int
    algorithm: ChecksumAlgorithm
    part_checksums: tuple[str, ...]  # wire form, part 1 first
    full_checksum: str  # the whole file's checksum (same algorithm), wire form


def hash_file_sync(
    path: Path,
    plan: UploadPlan,
    algorithm: ChecksumAlgorithm = DEFAULT_ALGORITHM,
    on_progress: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
) -> FileDigest:
    """The hashing pass itself; blocking, so run it on a worker thread.

    Reads the descriptor ``open_source`` checked (no symlink, regular file, allowed roots);
    ``stop`` ends the pass between reads (the caller was cancelled: shutdown must not wait).
    """
    with opened_source(path) as fd:
        return _hash_fd(fd, path, plan, algorithm, on_progress, stop)


class RunningDigest:
    """The one hasher: SHA-256 of every byte fed, one checksum per ``part_size`` bytes (any
    ``ChecksumAlgorithm``), and the whole object's value (CRC algorithms: combined from the
    parts; composite algorithms and NONE: ''). Fed by the hashing pass and the bundle zipper."""

    def __init__(self, part_size: int, algorithm: ChecksumAlgorithm) -> None:
        self.sha = hashlib.sha256()
        self.algorithm = algorithm
        self.parts: list[str] = []  # wire form, part 1 first
        self.size = 0
        self._part_size = part_size
        self._hasher = algorithm.hasher()
        self._in_part = 0
        self._whole = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        chunk = memoryview(data).cast("B")
        if len(chunk) < ALONGSIDE_FROM_BYTES:
            self.sha.update(chunk)
            self._update_parts(chunk)
        else:  # both release the GIL: the part checksums cost no time beside SHA-256
            sha = _alongside().submit(self.sha.update, chunk)
            try:
                self._update_parts(chunk)
            finally:
                sha.result()  # the caller reuses ``data`` next; a hash of memory: ms, no I/O
        self.size += len(chunk)

    def _update_parts(self, chunk: memoryview) -> None:
        pos = 0
        while pos < len(chunk):  # a read or write may straddle part boundaries
            take = min(self._part_size - self._in_part, len(chunk) - pos)
            self._hasher.update(chunk[pos : pos + take])
            pos += take
            self._in_part += take
            if self._in_part == self._part_size:
                self._end_part()

    def _end_part(self) -> None:
        self.parts.append(self._hasher.wire())
        if self.algorithm.is_crc:
            self._whole = self.algorithm.combine(self._whole, self._hasher.value, self._in_part)
        self._hasher, self._in_part = self.algorithm.hasher(), 0

    def finish(self) -> tuple[str, tuple[str, ...], str]:
        """(SHA-256 hex, part checksums including the last partial part or one empty part,
        the whole object's checksum)."""
        if self._in_part or not self.parts:
            self._end_part()
        whole = self.algorithm.to_wire(self._whole) if self.algorithm.is_crc else ""
        return self.sha.hexdigest(), tuple(self.parts), whole

    def digest(self, identity: FileIdentity) -> FileDigest:
        sha, parts, whole = self.finish()
        return FileDigest(identity, sha, self._part_size, self.algorithm, parts, whole)


def _hash_fd(
    fd: int,
    path: Path,
    plan: UploadPlan,
    algorithm: ChecksumAlgorithm,
    on_progress: Callable[[int], None] | None,
    stop: threading.Event | None,
) -> FileDigest:
    before = FileIdentity.of_stat(path, os.fstat(fd))
    if before.size != plan.size:
        raise SourceChangedError(path, f"size {plan.size} -> {before.size} bytes")
    running = RunningDigest(plan.part_size, algorithm)
    buffer = page_aligned(READ_SIZE)
    view = memoryview(buffer)
    next_report = PROGRESS_EVERY
    with open(fd, "rb", buffering=0, closefd=False) as f:
        while True:
            if stop is not None and stop.is_set():
                raise HashingStopped(path)
            n = f.readinto(buffer)
            if not n:
                break
            running.update(view[:n])
            if on_progress and running.size >= next_report:
                on_progress(running.size)
                next_report = running.size + PROGRESS_EVERY
    done = running.size
    digest = running.digest(before)
    after = FileIdentity.of(path)
    what = before.difference(after) or (None if done == plan.size else f"read {done} of {plan.size} bytes")
    if what or len(digest.part_checksums) != plan.part_count:
        raise SourceChangedError(path, what or "part count mismatch while hashing")
    if on_progress:
        on_progress(done)
    return digest


async def hash_file(
    path: Path,
    plan: UploadPlan,
    algorithm: ChecksumAlgorithm = DEFAULT_ALGORITHM,
    on_progress: Callable[[int], None] | None = None,
) -> FileDigest:
    """``hash_file_sync`` on a worker thread; ``on_progress(bytes_hashed)`` runs on the loop."""
    loop = asyncio.get_running_loop()
    report = None
    if on_progress is not None:
        callback = on_progress

        def report(done: int) -> None:
            loop.call_soon_threadsafe(callback, done)

    stop = threading.Event()
    try:
        return await asyncio.to_thread(hash_file_sync, path, plan, algorithm, report, stop)
    finally:
        stop.set()  # cancelled: the worker thread ends at its next read, not at the end of file


class HashingStopped(Exception):
    def __init__(self, path: Path) -> None:
        super().__init__(f"{path}: hashing stopped (cancelled)")


def part_checksum_sync(path: Path, part: Part, algorithm: ChecksumAlgorithm) -> str:
    """Re-read one part (to tell a changed file from corruption in transit)."""
    hasher = algorithm.hasher()
    with opened_source(path) as fd:  # a FIFO swapped in must not hang this either
        offset, left = part.offset, part.length
        while left:
            data = os.pread(fd, min(READ_SIZE, left), offset)
            if not data:
                break
            hasher.update(data)
            offset += len(data)
            left -= len(data)
    return hasher.wire()
