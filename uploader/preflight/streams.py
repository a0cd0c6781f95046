"""Decompressing readers for .pkg contents: xar's zlib encoding and Apple's pbzx payloads.

pbzx (https://gist.github.com/pudquick/29fcfe09c326a9b96cf5): ``"pbzx"``, a big-endian u64 of
flags, then chunks of (u64 flags, u64 length, data) while the previous flags had bit 24 set.
Each chunk is a complete xz stream, or raw bytes when it does not start with the xz magic.
Memory is bounded by one chunk (16 MiB in Apple's tools) or ``_OUT`` for zlib.
"""

from __future__ import annotations

import io
import lzma
import struct
import zlib
from typing import IO

_OUT = 1 << 20
_XZ_MAGIC = b"\xfd7zXZ\x00"
_PBZX_MORE = 1 << 24
_MAX_PBZX_CHUNK = 256 << 20


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
    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__()
        self._raw = raw
        header = raw.read(12)
        if len(header) < 12 or header[:4] != b"pbzx":
            raise ValueError("not a pbzx stream")
        (self._flags,) = struct.unpack(">Q", header[4:])

    def _next_chunk(self) -> bytes:
        while self._flags & _PBZX_MORE:
            header = self._raw.read(16)
            if len(header) < 16:
                return b""
            self._flags, length = struct.unpack(">QQ", header)
            if length > _MAX_PBZX_CHUNK:
                raise ValueError(f"pbzx chunk of {length} bytes is implausibly large")
            chunk = self._raw.read(length)
            data = lzma.decompress(chunk) if chunk.startswith(_XZ_MAGIC) else chunk
            if data:
                return data
        return b""
