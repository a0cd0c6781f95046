"""The request body of one UploadPart: a window onto the source file, streamed by aiohttp.

aiohttp reads a file-like body in 256 KiB chunks on executor threads, so file I/O stays off the
event loop and memory stays at a few chunks per part whatever the part size. Each read

* records the time bytes last moved (the engine's stall watchdog reads it);
* counts bytes handed to the network (reported as ``BytesSent``);
* feeds a running checksum, so a file modified under us is caught before the last byte leaves
  (the read fails and the engine raises SourceChangedError instead of letting S3 store it);
* draws from the shared bandwidth throttle, if any.

``fileno()`` is deliberately unsupported so aiohttp takes the length from Content-Length.
"""

from __future__ import annotations

import io
import os
import threading
import time

from uploader.hashing import ChecksumAlgorithm
from uploader.planning import Part
from uploader.throttle import Throttle


class PartChecksumMismatch(OSError):
    """Raised inside a read: the bytes on disk no longer match the planned checksum."""


class PartProgress:
    """Bytes moved and when; written by a reader thread, read by the event loop."""

    def __init__(self) -> None:
        self.bytes_read = 0
        self.bytes_reread = 0  # read again after a rewind (aiohttp's silent re-send)
        self.last_activity = time.monotonic()
        self._lock = threading.Lock()

    def advance(self, nbytes: int, reread: int = 0) -> None:
        with self._lock:
            self.bytes_read += nbytes
            self.bytes_reread += reread
            self.last_activity = time.monotonic()

    def snapshot(self) -> tuple[int, int, float]:
        """(bytes read, of which read a second time, monotonic time of the last read)."""
        with self._lock:
            return self.bytes_read, self.bytes_reread, self.last_activity


class PartBody(io.RawIOBase):
    def __init__(
        self,
        fd: int,
        part: Part,
        algorithm: ChecksumAlgorithm,
        expected_checksum: str,
        progress: PartProgress,
        throttle: Throttle | None = None,
    ) -> None:
        super().__init__()
        self._fd = fd
        self._part = part
        self._algorithm = algorithm
        self._expected = expected_checksum
        self._progress = progress
        self._throttle = throttle
        self._pos = 0
        self._crc = 0
        self._crc_pos = 0  # how far the running checksum has seen; a re-read after seek(0) restarts it
        self._high_water = 0  # furthest position ever read: bytes below it are being re-sent
        self.checksum_mismatch = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._part.length}[whence]
        self._pos = max(0, min(self._part.length, base + offset))
        if self._pos == 0:
            self._crc, self._crc_pos = 0, 0
        return self._pos

    def read(self, size: int = -1) -> bytes:
        left = self._part.length - self._pos
        n = left if size is None or size < 0 else min(size, left)
        if n <= 0:
            return b""
        if self._throttle is not None:
            self._throttle.acquire_blocking(n)
        data = os.pread(self._fd, n, self._part.offset + self._pos)
        if len(data) < n:
            self.checksum_mismatch = True
            raise PartChecksumMismatch(f"part {self._part.number}: file is shorter than planned")
        if self._pos == self._crc_pos:
            self._crc = self._algorithm.update(data, self._crc)
            self._crc_pos += n
        self._pos += n
        if self._crc_pos == self._part.length and self._algorithm.to_wire(self._crc) != self._expected:
            self.checksum_mismatch = True
            raise PartChecksumMismatch(f"part {self._part.number}: bytes on disk changed")
        reread = max(0, min(n, self._high_water - (self._pos - n)))
        self._high_water = max(self._high_water, self._pos)
        self._progress.advance(n, reread)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:  # the engine owns the file descriptor
        super().close()
