"""Read buffers start on a page boundary and behave like the bytearrays they replace."""

from __future__ import annotations

import ctypes
import mmap
import os
from pathlib import Path

from uploader.buffers import page_aligned
from uploader.checksum import ChecksumAlgorithm
from uploader.part_body import read_part
from uploader.planning import Part


def _address(buffer: mmap.mmap) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(buffer))


def test_a_buffer_starts_a_page_and_is_zeroed() -> None:
    buffers = [page_aligned(size) for size in (4096, 5 * 1024 * 1024 + 1, 16 * 1024 * 1024)]
    for buffer in buffers:
        assert _address(buffer) % mmap.PAGESIZE == 0
        assert buffer[:8] == bytes(8) and buffer[-8:] == bytes(8)


def test_a_part_read_into_one_is_the_file_s_bytes_and_checksum(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "source.bin"
    path.write_bytes(data)
    part = Part(number=2, offset=1024 * 1024, length=2 * 1024 * 1024 + 17)
    buffer = page_aligned(4 * 1024 * 1024)
    algorithm = ChecksumAlgorithm.CRC64NVME
    fd = os.open(path, os.O_RDONLY)
    try:
        checksum = read_part(fd, part, buffer, algorithm)
    finally:
        os.close(fd)
    expected = data[part.offset : part.offset + part.length]
    assert buffer[: part.length] == expected
    assert checksum == algorithm.checksum(expected)
