"""Test inputs made on the spot: incompressible files and zip archives."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import BinaryIO

from uploader.config import MiB

PART = 5 * MiB  # SeaweedFS enforces S3's 5 MiB minimum part at CompleteMultipartUpload


def write_random(out: BinaryIO, size: int) -> None:
    """``size`` incompressible bytes, in 1 MiB blocks (memory stays bounded for any size)."""
    left = size
    while left:
        n = min(left, MiB)
        out.write(os.urandom(n))
        left -= n


def make_file(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        write_random(f, size)
    return path


def make_archive(path: Path, payload_bytes: int, marker: bytes = b"") -> Path:
    """A stored (uncompressed) zip of random data, optionally carrying an emulator marker."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        with archive.open("Game.app/Contents/Resources/data.bin", "w", force_zip64=True) as member:
            write_random(member, payload_bytes)
        if marker:
            archive.writestr("Game.app/Contents/Resources/marker.txt", marker)
    return path


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()
