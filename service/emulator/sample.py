"""Sample archives for the demo and benchmarks: a real zip of any size, random or sparse.

``sparse`` writes a valid stored zip whose big member is a hole in the file: it costs no disk
and no write time however large, and reads back as zeros (hashing and uploading still read
every byte). ``random`` is incompressible data, closer to a real build.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

CHUNK = 8 * 1024 * 1024
MEMBER = "NotarydDemo.app/Contents/Resources/assets.pak"


def make_sample_archive(path: Path, size: int, *, content: str = "sparse") -> Path:
    """Write a zip of about ``size`` bytes to ``path`` (blocking; run it off the event loop)."""
    if content not in ("sparse", "random"):
        raise ValueError("content must be 'sparse' or 'random'")
    name = MEMBER.encode()
    data_size = max(0, size - 200)
    path.parent.mkdir(parents=True, exist_ok=True)
    crc = 0
    with open(path, "wb") as f:
        # Local header with a zip64 extra field (sizes are written in it, not the header).
        zip64_local = struct.pack("<HHQQ", 0x0001, 16, data_size, data_size)
        f.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, 0, 0, 0x21, 0,
                            0xFFFFFFFF, 0xFFFFFFFF, len(name), len(zip64_local)))
        f.write(name + zip64_local)
        data_start = f.tell()
        if content == "sparse":
            zeros = bytes(CHUNK)
            left = data_size
            while left:
                n = min(left, CHUNK)
                crc = zlib.crc32(zeros[:n], crc)
                left -= n
            f.seek(data_start + data_size)
        else:
            left = data_size
            while left:
                block = os.urandom(min(left, CHUNK))
                crc = zlib.crc32(block, crc)
                f.write(block)
                left -= len(block)
        central_start = f.tell()
        zip64_central = struct.pack("<HHQQQ", 0x0001, 24, data_size, data_size, 0)
        f.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 0, 0, 0x21, crc,
                            0xFFFFFFFF, 0xFFFFFFFF, len(name), len(zip64_central), 0, 0, 0,
                            0o100644 << 16, 0xFFFFFFFF))
        f.write(name + zip64_central)
        central_size = f.tell() - central_start
        zip64_end = f.tell()
        f.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, 1, 1,
                            central_size, central_start))
        f.write(struct.pack("<IIQI", 0x07064B50, 0, zip64_end, 1))
        f.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF,
                            0xFFFFFFFF, 0))
    return path
