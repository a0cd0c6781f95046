"""Read buffers that start on a page boundary.

Every large read of the source file (a part before it is sent, the hashing pass, the bundle
zipper) lands in one of these. A large ``bytearray`` is malloc'd with its own mmap and its data
starts 16 bytes into a page, so when the kernel copies a page of the page cache into it, each
store lands 16 bytes past a load modulo 4 KiB and the CPU holds loads back behind stores they
only seem to depend on (4K aliasing). Measured on the benchmark machine (AMD EPYC, 16 MiB
parts, 8 buffers in turn, ``preadv`` from the page cache): 0.40 CPU-s per GiB into bytearrays,
0.13 into page-aligned buffers; ``benchmarks/floor.py`` shows the same with a socket send
after each read. An anonymous private mapping is page-aligned, zero-filled on first touch and,
like a bytearray, writable through ``memoryview``.
"""

from __future__ import annotations

import mmap

ReadBuffer = bytearray | mmap.mmap


def page_aligned(size: int) -> mmap.mmap:
    """A writable buffer of ``size`` bytes whose first byte starts a page."""
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)  # fileno -1: anonymous memory
