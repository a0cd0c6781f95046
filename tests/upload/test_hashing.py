from __future__ import annotations

import base64
import hashlib
import os
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from awscrt import checksums

from uploader.config import UploadLimits
from uploader.errors import SourceChangedError
from uploader.hashing import (
    READ_SIZE,
    ChecksumAlgorithm,
    FileIdentity,
    hash_file,
    hash_file_sync,
    part_checksum_sync,
)
from uploader.planning import plan_upload

TINY = UploadLimits(min_part_size=1)


INDEPENDENT = {
    ChecksumAlgorithm.CRC64NVME: checksums.crc64nvme,
    ChecksumAlgorithm.CRC32C: checksums.crc32c,
    ChecksumAlgorithm.CRC32: zlib.crc32,
}


@pytest.mark.parametrize("algorithm", list(INDEPENDENT))
@pytest.mark.parametrize("part_size", [1000, READ_SIZE - 1, READ_SIZE, READ_SIZE + 3, 3 * READ_SIZE])
async def test_one_pass_matches_independent_digests(
    tmp_path: Path, part_size: int, algorithm: ChecksumAlgorithm
) -> None:
    data = os.urandom(2 * READ_SIZE + 12345)
    path = tmp_path / "archive.zip"
    path.write_bytes(data)
    plan = plan_upload(len(data), part_size, TINY)
    digest = await hash_file(path, plan, algorithm)
    assert digest.sha256 == hashlib.sha256(data).hexdigest()
    crc = INDEPENDENT[algorithm]
    expected = [algorithm.to_wire(crc(data[p.offset : p.end])) for p in plan.parts()]
    assert list(digest.part_checksums) == expected
    assert digest.full_checksum == algorithm.to_wire(crc(data))
    assert digest.identity == FileIdentity.of(path)
    for part in plan.parts()[:3]:
        assert part_checksum_sync(path, part, algorithm) == expected[part.number - 1]


@pytest.mark.parametrize(("algorithm", "expected"), [
    (ChecksumAlgorithm.SHA256, lambda b: base64.b64encode(hashlib.sha256(b).digest()).decode()),
    (ChecksumAlgorithm.NONE, lambda b: ""),
])
async def test_composite_only_algorithms_checksum_each_part(
    tmp_path: Path, algorithm: ChecksumAlgorithm, expected: Callable[[bytes], str]
) -> None:
    data = os.urandom(READ_SIZE + 777)
    path = tmp_path / "archive.zip"
    path.write_bytes(data)
    plan = plan_upload(len(data), 5000, TINY)
    digest = await hash_file(path, plan, algorithm)
    assert list(digest.part_checksums) == [expected(data[p.offset : p.end]) for p in plan.parts()]
    assert digest.full_checksum == ""
    assert part_checksum_sync(path, plan.part(2), algorithm) == digest.part_checksums[1]


async def test_progress_is_reported_on_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "a"
    path.write_bytes(b"x" * (READ_SIZE * 9))
    seen: list[int] = []
    await hash_file(path, plan_upload(READ_SIZE * 9, READ_SIZE, TINY), on_progress=seen.append)
    assert seen[-1] == READ_SIZE * 9
    assert seen == sorted(seen)


def test_a_file_that_grew_since_planning_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a"
    path.write_bytes(b"x" * 100)
    plan = plan_upload(100, 10, TINY)
    path.write_bytes(b"x" * 101)
    with pytest.raises(SourceChangedError, match="size 100 -> 101"):
        hash_file_sync(path, plan)


def test_identity_difference_names_what_changed(tmp_path: Path) -> None:
    path = tmp_path / "a"
    path.write_bytes(b"1")
    before = FileIdentity.of(path)
    os.utime(path, ns=(1, 1))
    assert before.difference(FileIdentity.of(path)) == "modification time changed"
    replacement = tmp_path / "b"
    replacement.write_bytes(b"22")
    os.replace(replacement, path)
    text = before.difference(FileIdentity.of(path)) or ""
    assert "size 1 -> 2 bytes" in text and "inode changed" in text
