"""Random-access views of a file's bytes, wherever the file lives (disk, zip member, cpio entry).

``ByteSource.read_at(offset, length)`` returns up to ``length`` bytes (fewer only at the end).

* ``RegionSource`` is a window on a seekable file (a file on disk, a stored zip member, a xar
  heap entry): any order of reads, no copying.
* ``ForwardSource`` wraps a stream that can only go forward (a deflated zip member, a cpio
  entry inside a gzip payload). Reads must come in increasing offset order, apart from
  re-reading the bytes of the previous request; skipped bytes are read and dropped, so memory
  stays bounded by the largest single request.

Mach-O inspection only asks for increasing offsets (headers, then each slice's signature), so
both kinds serve it. ``open_seekable(budget)`` gives a seekable file of the whole content, for
nested archives: a view for regions, the stream itself when it can seek (zipfile's members can),
otherwise a copy bounded by the run's spool budget.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Protocol

from uploader.preflight.limits import Budget

_COPY_CHUNK = 1 << 20


class BackwardReadError(ValueError):
    """A forward-only source was asked for bytes it has already passed."""


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class ByteSource(Protocol):
    size: int

    def read_at(self, offset: int, length: int) -> bytes: ...

    def open_seekable(self, budget: Budget) -> contextlib.AbstractContextManager[IO[bytes]]: ...


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

    @contextmanager
    def open_seekable(self, budget: Budget) -> Iterator[IO[bytes]]:
        del budget  # a view costs nothing
        yield io.BufferedReader(RegionFile(self._file, self._base, self.size))


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

    @contextmanager
    def open_seekable(self, budget: Budget) -> Iterator[IO[bytes]]:
        if self._buffer_start != 0:
            raise BackwardReadError("cannot reopen a stream whose start was already passed")
        head, stream = self._buffer, self._stream
        self._buffer, self._buffer_start = b"", self.size  # the stream is handed over
        if isinstance(stream, io.RawIOBase) and stream.seekable():
            stream.seek(0)
            yield io.BufferedReader(stream)
            return
        reserved = 0
        with tempfile.SpooledTemporaryFile(max_size=budget.limits.spool_in_memory) as spooled:
            try:
                budget.reserve_spool(len(head))
                reserved, remaining = len(head), self.size - len(head)
                spooled.write(head)
                while remaining > 0:
                    chunk = stream.read(min(_COPY_CHUNK, remaining))
                    if not chunk:
                        break
                    budget.reserve_spool(len(chunk))
                    reserved += len(chunk)
                    spooled.write(chunk)
                    remaining -= len(chunk)
                spooled.seek(0)
                yield spooled
            finally:
                budget.release_spool(reserved)

    def copies_to_seek(self) -> bool:
        """Whether ``open_seekable`` has to copy the stream (it cannot seek by itself)."""
        return not (isinstance(self._stream, io.RawIOBase) and self._stream.seekable())

    def _skip(self, count: int) -> None:
        while count > 0:
            chunk = self._stream.read(min(_COPY_CHUNK, count))
            if not chunk:
                return
            count -= len(chunk)

    def _read_exact(self, count: int) -> bytes:
        # Bounded reads into one buffer: asking a stream for tens of MiB at once makes it
        # build, copy and copy again a buffer that size.
        buffer = bytearray()
        while count > 0:
            chunk = self._stream.read(min(_COPY_CHUNK, count))
            if not chunk:
                break
            buffer += chunk
            count -= len(chunk)
        return bytes(buffer)


@contextmanager
def random_access(source: ByteSource, budget: Budget) -> Iterator[ByteSource]:
    """``source`` readable in any order (a signature is read before the pages it covers):
    itself when it already is, else through ``open_seekable``, so a copy out of a forward-only
    stream is bounded by the run's spool budget like any nested archive."""
    if not isinstance(source, ForwardSource):
        yield source
        return
    size = source.size
    with source.open_seekable(budget) as seekable:
        yield RegionSource(seekable, 0, size)
