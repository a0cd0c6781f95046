"""Source files for the benchmark: generated once, reused by every run and every tool.

Two kinds, both with a unique 8-byte stamp (the MiB index) at the start of every MiB, so a
missing, duplicated or reordered part changes the object's CRC32C:

* ``random``: every byte is pseudo-random (a 64 MiB random block, repeated with the stamps).
  Used up to ``RANDOM_MAX_BYTES`` so the file stays in the page cache (24 GiB RAM here).
* ``stamped-sparse``: a sparse file with a 4 KiB random stamp at every MiB and holes between.
  Used for the 25 GiB size: reading holes costs no disk I/O and no page-cache pressure, and
  none of the tools can tell (no compression, and hashing speed does not depend on the data).
"""

from __future__ import annotations

import os
import random
import struct
from pathlib import Path

MiB = 1024 * 1024
GiB = 1024 * MiB
RANDOM_MAX_BYTES = 8 * GiB
BLOCK = 64 * MiB
STAMP = 4096


def kind_for(size: int) -> str:
    return "random" if size <= RANDOM_MAX_BYTES else "stamped-sparse"


def _name(size: int) -> str:
    if size % GiB == 0:
        return f"{size // GiB}GiB"
    return f"{size // MiB}MiB" if size % MiB == 0 else f"{size}B"


def ensure_source(directory: Path, size: int) -> Path:
    """The source file of ``size`` bytes in ``directory``, creating it if needed."""
    kind = kind_for(size)
    path = directory / f"source-{_name(size)}-{kind}.bin"
    done = path.with_name(path.name + ".complete")
    if path.exists() and done.exists() and path.stat().st_size == size:
        return path
    directory.mkdir(parents=True, exist_ok=True)
    base = random.Random(0x5EED).randbytes(BLOCK)
    tmp = path.with_name(path.name + ".partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, size)
        view = memoryview(base)
        for index, offset in enumerate(range(0, size, MiB)):
            length = min(MiB, size - offset)
            if kind == "random":
                start = offset % BLOCK
                chunk = struct.pack(">Q", index) + view[start + 8 : start + length]
            else:
                start = (index * STAMP) % (BLOCK - STAMP)
                chunk = struct.pack(">Q", index) + view[start + 8 : start + min(STAMP, length)]
            os.pwrite(fd, chunk[:length], offset)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    done.touch()
    return path
