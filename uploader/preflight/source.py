"""Random-access views of a file's bytes, wherever the file lives (disk, zip member, cpio entry).

``ByteSource.read_at(offset, length)`` returns up to ``length`` bytes (fewer only at the end).

* ``RegionSource`` is a window on a seekable file (a file on disk, a stored zip member, a xar
  heap entry): any order of reads, no copying.
* ``ForwardSource`` wraps a stream that can only go forward (a deflated zip member, a cpio
  entry inside a gzip payload). Reads must come in increasing offset order, apart from
  re-reading the bytes of the previous request; skipped bytes are read and dropped, so memory
  stays bounded by the largest single request.

Mach-O inspection only asks for increasing offsets (headers, then each slice's signature), so
both kinds serve it. ``spool()`` gives a seekable file of the whole content, for nested archives.
"""

from __future__ import annotations

import io
import tempfile
from typing import IO, Protocol

_COPY_CHUNK = 1 << 20
_SPOOL_IN_MEMORY = 64 << 20  # nested archives up to this size stay in memory


class BackwardReadError(ValueError):
    """A forward-only source was asked for bytes it has already passed."""


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class ByteSource(Protocol):
    size: int

    def read_at(self, offset: int, length: int) -> bytes: ...

    def spool(self) -> IO[bytes]: ...


class RegionFile(io.RawIOBase):
    """A seekable, read-only file object over ``[base, base + size)`` of another file.

    It seeks the shared underlying file before every read, so several views (and zipfile's own
    shared-file readers) can take turns on one handle within one thread.
    """

    def __init__(self, fileobj: IO[bytes], base: int, size: int) -> None:
        super().__init__()
        self._file, self._base, self._size, self._pos = fileobj, base, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        anchor = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, anchor + offset)
        return self._pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self._size - self._pos)
        if n <= 0:
            return 0
        self._file.seek(self._base + self._pos)
        data = self._file.read(n)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


class RegionSource:
    def __init__(self, fileobj: IO[bytes], base: int, size: int) -> None:
        self._file, self._base, self.size = fileobj, base, size

    def read_at(self, offset: int, length: int) -> bytes:
        length = min(length, self.size - offset)
        if length <= 0:
            return b""
        self._file.seek(self._base + offset)
        return self._file.read(length)

    def spool(self) -> IO[bytes]:
        return io.BufferedReader(RegionFile(self._file, self._base, self.size))


class ForwardSource:
    def __init__(self, stream: Readable, size: int) -> None:
        self._stream, self.size = stream, size
        self._buffer = b""
        self._buffer_start = 0  # offset of _buffer[0]; the stream sits at the buffer's end

    @property
    def position(self) -> int:
        return self._buffer_start + len(self._buffer)

    def read_at(self, offset: int, length: int) -> bytes:
        end = min(offset + length, self.size)
        if offset >= end:
            return b""
        if offset < self._buffer_start:
            raise BackwardReadError(f"offset {offset} was already passed")
        if offset >= self.position:
            self._skip(offset - self.position)
            self._buffer, self._buffer_start = b"", offset
        else:
            self._buffer = self._buffer[offset - self._buffer_start :]
            self._buffer_start = offset
        if end > self.position:
            self._buffer += self._read_exact(end - self.position)
        return self._buffer[: end - offset]

    def spool(self) -> IO[bytes]:
        if self._buffer_start != 0:
            raise BackwardReadError("cannot spool a stream whose start was already passed")
        spooled = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)  # noqa: SIM115
        spooled.write(self._buffer)
        remaining = self.size - len(self._buffer)
        while remaining > 0:
            chunk = self._stream.read(min(_COPY_CHUNK, remaining))
            if not chunk:
                break
            spooled.write(chunk)
            remaining -= len(chunk)
        self._buffer, self._buffer_start = b"", self.size
        spooled.seek(0)
        return spooled

    def _skip(self, count: int) -> None:
        while count > 0:
            chunk = self._stream.read(min(_COPY_CHUNK, count))
            if not chunk:
                return
            count -= len(chunk)

    def _read_exact(self, count: int) -> bytes:
        parts = []
        while count > 0:
            chunk = self._stream.read(count)
            if not chunk:
                break
            parts.append(chunk)
            count -= len(chunk)
        return b"".join(parts)
