"""The bounds that keep preflight safe on any input: memory, time and temp space stay small
whatever an archive claims, and anything preflight could not read becomes an error, not a PASS.

Every limit lives in ``Limits`` so a run can be tightened in one place (tests do). Two kinds of
failure:

* ``LimitError``: one member (a nested archive, a payload, a Mach-O) exceeds a bound. It is
  reported as an error on that member and the walk goes on with its siblings.
* ``ScanAborted``: the whole run exceeds a bound (decompressed bytes, members). Nothing more can
  be checked; the report so far is kept and gets one error naming the bound.

Decompression is metered by ``Metered``, which wraps every decompressing stream: what all of
them produce together may not exceed ``expansion_grace`` plus ``expansion_ratio`` times the
bytes the input occupies on disk, so nested bombs (zip in zip in zip) stop after a bounded
amount of work. A stream that declared its size may not produce more than that.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Protocol

_MiB = 1 << 20


@dataclass(frozen=True)
class Limits:
    max_depth: int = 16  # archives inside archives (jar in wheel in zip in pkg is 4)
    max_members: int = 1_000_000  # files looked at in one run (~13 s for a million cpio entries)
    max_open_zip_entries: int = 250_000  # central-directory entries in memory at once, ~700 B each
    max_zip_directory_bytes: int = 64 * _MiB  # read whole by zipfile; 250,000 entries is ~40 MiB
    max_toc_bytes: int = 8 * _MiB  # xar table of contents, uncompressed (a .pkg's is a few KiB)
    max_toc_elements: int = 200_000
    max_folder_depth: int = 64  # folders inside folders, in an .app or a xar table of contents
    max_pbzx_chunk: int = 64 * _MiB  # compressed and uncompressed; Apple's tools write 16 MiB
    max_cpio_name: int = 4096  # bytes; PATH_MAX is 1024 on macOS
    max_path: int = 4096  # characters in a reported path, archives inside archives included
    expansion_ratio: int = 100  # decompressed bytes per byte on disk, for the whole run
    expansion_grace: int = 256 * _MiB  # decompressed bytes allowed whatever the ratio
    max_spool_bytes: int = 64 * _MiB  # nested archives copied out of forward-only streams
    spool_in_memory: int = 8 * _MiB  # each such copy stays in memory up to this size
    max_issues: int = 10_000  # findings kept in the report; the rest are counted
    # Bundle seals: files remembered until their bundle is judged (~300 B each), and the
    # Info.plist and CodeResources bytes kept to parse (a large game's seal is a few MiB).
    max_seal_records: int = 300_000
    max_seal_content: int = 16 * _MiB
    max_seal_content_total: int = 64 * _MiB


DEFAULT_LIMITS = Limits()


class LimitError(ValueError):
    """One member exceeds a bound; it is reported as not inspected."""


class ScanAborted(Exception):
    """The run as a whole exceeds a bound; nothing more is inspected."""


class Budget:
    """Decompressed bytes for the whole run, and spool space currently held. Not thread safe."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.allowed = limits.expansion_grace
        self.decompressed = 0
        self.spooled = 0

    def allow_disk_bytes(self, size: int) -> None:
        """A file on disk of ``size`` bytes is about to be read: it may expand by the ratio."""
        self.allowed += self.limits.expansion_ratio * max(0, size)

    def charge(self, produced: int) -> None:
        self.decompressed += produced
        if self.decompressed > self.allowed:
            raise ScanAborted(
                f"decompressed data would exceed {self.allowed >> 20} MiB "
                f"({self.limits.expansion_ratio}x the input plus "
                f"{self.limits.expansion_grace >> 20} MiB): a decompression bomb, or an archive "
                "far more compressible than a build"
            )

    def reserve_spool(self, size: int) -> None:
        if self.spooled + size > self.limits.max_spool_bytes:
            raise LimitError(
                f"a nested archive inside a compressed stream needs more than "
                f"{self.limits.max_spool_bytes >> 20} MiB of temporary space; store it "
                "uncompressed in its parent or run preflight on it separately"
            )
        self.spooled += size

    def can_spool(self, size: int) -> bool:
        return self.spooled + size <= self.limits.max_spool_bytes

    def release_spool(self, size: int) -> None:
        self.spooled -= size


class _Stream(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class Metered(io.RawIOBase):
    """A decompressing stream whose output is charged to the run's ``Budget``.

    ``declared`` is the size the container promised for this stream, when it promised one;
    producing more is an error. Seeking passes through when the wrapped stream can seek
    (zipfile's members can, by re-inflating from the start on a backward seek), and the bytes
    that seek has to inflate are charged too.
    """

    def __init__(
        self, stream: _Stream, budget: Budget, what: str, declared: int | None = None
    ) -> None:
        super().__init__()
        self._stream, self._budget, self._what, self._declared = stream, budget, what, declared
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        seekable = getattr(self._stream, "seekable", None)
        return bool(seekable and seekable())

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if not self.seekable():
            raise io.UnsupportedOperation("seek")
        seek = self._stream.seek  # type: ignore[attr-defined]
        # A backward seek re-inflates from the start, a forward one inflates the gap: charge
        # that work before doing it, so a bomb stops before it costs anything.
        ends = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._declared}
        anchor = ends.get(whence)
        target = None if anchor is None else max(0, anchor + offset)
        if target is None:  # SEEK_END of a stream that declared no size: only it knows
            end: int = seek(0, io.SEEK_END)
            self._budget.charge(end if end < self._pos else end - self._pos)
            self._pos = end
            target = end + offset
        self._budget.charge(target if target < self._pos else target - self._pos)
        self._pos = seek(target)
        return self._pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._stream.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self._pos += n
        self._budget.charge(n)
        if self._declared is not None and self._pos > self._declared:
            raise LimitError(
                f"{self._what} decompresses to more than the {self._declared} bytes it declares"
            )
        return n
