"""Test inputs made on the spot: incompressible files and zip archives."""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import io
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

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


@contextlib.contextmanager
def small_tmpfs(where: Path, size_bytes: int) -> Iterator[Path]:
    """A tmpfs of ``size_bytes`` mounted on ``where`` (made if missing): a disk that fills up.

    Needs CAP_SYS_ADMIN (root, as in CI's container); the test is skipped without it. Mounted
    with the mount(2) call itself (no child process), unmounted even when the test fails.
    """
    libc = ctypes.CDLL(None, use_errno=True)  # this process's own libc: nothing is run
    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size_bytes},mode=0700".encode()
    if libc.mount(b"tmpfs", os.fsencode(where), b"tmpfs", 0, options) != 0:
        error = ctypes.get_errno()
        pytest.skip(f"cannot mount a tmpfs here ({os.strerror(error)}): needs root")
    try:
        yield where
    finally:
        if libc.umount2(os.fsencode(where), 2) != 0:  # MNT_DETACH: even if a file is still open
            raise OSError(ctypes.get_errno(), f"umount {where}")


def file_sha256(path: Path) -> str:
    """SHA-256 of a local file, read in 8 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 << 20):
            digest.update(block)
    return digest.hexdigest()
