"""Read buffers that start on a page boundary.

Every large read of the source file (a part before it is sent, the hashing pass, the bundle
zipper) lands in one of these. A ``bytearray``'s data starts a few bytes into a page, so the
kernel copies each page of the page cache across two pages of ours, unaligned; measured on the
benchmark machine (AMD EPYC, 16 MiB parts, 8 buffers in turn): 0.40 CPU-s per GiB into
bytearrays, 0.13 into page-aligned buffers, for the same ``preadv`` calls
(``python -m benchmarks.floor`` shows both). An anonymous private mapping is page-aligned,
zero-filled on first touch and, like a bytearray, writable through ``memoryview``.
"""

from __future__ import annotations

import mmap

ReadBuffer = bytearray | mmap.mmap


def page_aligned(size: int) -> mmap.mmap:
    """A writable buffer of ``size`` bytes whose first byte starts a page."""
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)  # fileno -1: anonymous
