"""Streaming reader for the cpio archives inside .pkg payloads ("odc" and "newc" flavours).

odc: 76-byte header of ASCII octal fields, magic ``070707``, no padding. newc/crc: 110-byte header
of ASCII hex fields, magic ``070701``/``070702``, name and data padded to 4 bytes
(libarchive/libarchive ``libarchive/libarchive-formats.5``). Entries must be consumed in order;
the iterator skips whatever the caller left unread.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from dataclasses import dataclass

from uploader.preflight.source import Readable

_TRAILER = "TRAILER!!!"
_SKIP = 1 << 20
_OCTAL, _HEX = b"01234567", b"0123456789abcdefABCDEF"


class CpioError(ValueError):
    """The payload is not a cpio archive we understand."""


@dataclass(frozen=True)
class CpioEntry:
    name: str
    mode: int
    size: int

    @property
    def is_regular_file(self) -> bool:
        return stat.S_ISREG(self.mode)


class EntryReader:
    """Reads at most one entry's bytes from the archive stream."""

    def __init__(self, stream: Readable, size: int) -> None:
        self._stream, self.remaining = stream, size

    def read(self, n: int = -1) -> bytes:
        n = self.remaining if n < 0 else min(n, self.remaining)
        data = self._stream.read(n) if n else b""
        self.remaining -= len(data)
        return data

    def drain(self) -> None:
        while self.remaining:
            if not self.read(_SKIP):
                raise CpioError("payload ends inside an entry")


def iter_entries(stream: Readable, max_name: int) -> Iterator[tuple[CpioEntry, EntryReader]]:
    """Entries in archive order; a name longer than ``max_name`` bytes is an error."""
    while True:
        magic = _read_exact(stream, 6)
        if magic == b"070707":
            fields = _read_exact(stream, 70)
            mode, namesize, size = (
                _number(fields[12:18], 8),
                _number(fields[53:59], 8),
                _number(fields[59:70], 8),
            )
            name_pad, data_pad = 0, 0
        elif magic in (b"070701", b"070702"):
            fields = _read_exact(stream, 104)
            mode, size, namesize = (
                _number(fields[8:16], 16),
                _number(fields[48:56], 16),
                _number(fields[88:96], 16),
            )
            name_pad, data_pad = -(110 + namesize) % 4, -size % 4
        else:
            raise CpioError(f"unknown cpio header magic {magic!r}")
        if namesize > max_name:
            raise CpioError(f"cpio entry name of {namesize:,} bytes (limit {max_name:,})")
        name_raw = _read_exact(stream, namesize)
        _read_exact(stream, name_pad)
        name = name_raw.rstrip(b"\x00").decode("utf-8", "surrogateescape")
        if name == _TRAILER:
            return
        reader = EntryReader(stream, size)
        yield CpioEntry(name, mode, size), reader
        reader.drain()
        _read_exact(stream, data_pad)


def _number(field: bytes, base: int) -> int:
    # int() alone would also take signs, spaces and underscores: a negative size must not pass.
    digits = _OCTAL if base == 8 else _HEX
    if not field or field.strip(digits):
        raise CpioError(f"cpio header field {field!r} is not a base-{base} number")
    return int(field, base)


def _read_exact(stream: Readable, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            raise CpioError("payload ends inside a cpio header")
        data += chunk
    return data
