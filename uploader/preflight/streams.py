"""Decompressing readers for .pkg contents: xar's zlib encoding and Apple's pbzx payloads.

pbzx (https://gist.github.com/pudquick/29fcfe09c326a9b96cf5): ``"pbzx"``, a big-endian u64 of
flags, then chunks of (u64 flags, u64 length, data) while the previous flags had bit 24 set.
Each chunk is a complete xz stream, or raw bytes when it does not start with the xz magic.
Both readers stream: memory is bounded by ``_OUT`` whatever a chunk or stream claims, and a
pbzx chunk may neither claim nor inflate to more than ``max_chunk`` bytes.
"""

from __future__ import annotations

import io
import lzma
import struct
import zlib
from collections.abc import Iterator
from typing import IO

from uploader.preflight.limits import LimitError

_OUT = 1 << 20
_XZ_MAGIC = b"\xfd7zXZ\x00"
_PBZX_MORE = 1 << 24


class _ChunkReader(io.RawIOBase):
    """Serves bytes from ``_next_chunk()`` until it returns b""."""

    def __init__(self) -> None:
        super().__init__()
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            self._pending = self._next_chunk()
            if not self._pending:
                return 0
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def _next_chunk(self) -> bytes:
        raise NotImplementedError


class ZlibReader(_ChunkReader):
    """xar's "application/x-gzip" encoding: a zlib stream (or gzip; wbits 47 detects either)."""

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__()
        self._raw = raw
        self._inflater = zlib.decompressobj(47)

    def _next_chunk(self) -> bytes:
        while True:
            if self._inflater.unconsumed_tail:
                return self._inflater.decompress(self._inflater.unconsumed_tail, _OUT)
            if self._inflater.eof:
                return b""
            data = self._raw.read(_OUT)
            if not data:
                return self._inflater.flush()
            out = self._inflater.decompress(data, _OUT)
            if out:
                return out


class PbzxReader(_ChunkReader):
    def __init__(self, raw: IO[bytes], max_chunk: int) -> None:
        super().__init__()
        self._raw, self._max_chunk = raw, max_chunk
        header = raw.read(12)
        if len(header) < 12 or header[:4] != b"pbzx":
            raise ValueError("not a pbzx stream")
        (flags,) = struct.unpack(">Q", header[4:])
        self._pieces = self._decode(flags)

    def _next_chunk(self) -> bytes:
        return next((piece for piece in self._pieces if piece), b"")

    def _decode(self, flags: int) -> Iterator[bytes]:
        while flags & _PBZX_MORE:
            header = self._raw.read(16)
            if not header:
                return
            if len(header) < 16:
                raise ValueError("pbzx stream ends inside a chunk header")
            flags, length = struct.unpack(">QQ", header)
            if length > self._max_chunk:
                raise LimitError(
                    f"pbzx chunk claims {length:,} bytes; preflight reads chunks up to "
                    f"{self._max_chunk:,} (Apple's tools write 16 MiB)"
                )
            head = self._read(min(length, len(_XZ_MAGIC)))
            if head == _XZ_MAGIC:
                yield from self._inflate_xz(head, length - len(head))
            else:
                yield head
                yield from self._copy(length - len(head))

    def _inflate_xz(self, head: bytes, remaining: int) -> Iterator[bytes]:
        decompressor = lzma.LZMADecompressor(lzma.FORMAT_XZ)
        produced, data = 0, head
        while not decompressor.eof:
            if not data and decompressor.needs_input:
                if not remaining:
                    raise ValueError("pbzx chunk ends inside its xz stream")
                data = self._read(min(_OUT, remaining))
                remaining -= len(data)
            out = decompressor.decompress(data, _OUT)
            data = b""
            produced += len(out)
            if produced > self._max_chunk:
                raise LimitError(f"pbzx chunk inflates to more than {self._max_chunk:,} bytes")
            if out:
                yield out
        for _padding in self._copy(remaining):  # bytes after the xz stream, inside the chunk
            pass

    def _copy(self, remaining: int) -> Iterator[bytes]:
        while remaining:
            data = self._read(min(_OUT, remaining))
            remaining -= len(data)
            yield data

    def _read(self, n: int) -> bytes:
        data = self._raw.read(n)
        if len(data) < n:
            raise ValueError("pbzx stream ends inside a chunk")
        return data
