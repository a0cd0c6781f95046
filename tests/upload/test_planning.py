from __future__ import annotations

import itertools

import pytest

from uploader.config import GiB, MiB, UploadLimits
from uploader.errors import ConfigError
from uploader.planning import plan_upload


def test_parts_cover_the_file_exactly_once() -> None:
    plan = plan_upload(100 * MiB + 7, 16 * MiB)
    parts = plan.parts()
    assert [p.number for p in parts] == list(range(1, 8))
    assert parts[0].offset == 0
    assert all(a.end == b.offset for a, b in itertools.pairwise(parts))
    assert parts[-1].end == 100 * MiB + 7
    assert all(p.length == 16 * MiB for p in parts[:-1])
    assert parts[-1].length == 4 * MiB + 7


def test_part_size_is_clamped_to_s3_minimum() -> None:
    assert plan_upload(50 * MiB, 1 * MiB).part_size == 5 * MiB


def test_part_size_grows_to_stay_within_10000_parts() -> None:
    size = 25 * 10**9 * 4  # 100 GB at 8 MiB parts would need ~11,921 parts
    plan = plan_upload(size, 8 * MiB)
    assert plan.part_count <= 10_000
    assert plan.part_size % MiB == 0
    assert plan.part(plan.part_count).end == size


def test_a_25_gb_archive_fits_comfortably_at_the_default() -> None:
    plan = plan_upload(25 * 10**9, 16 * MiB)
    assert plan.part_size == 16 * MiB
    assert 1_400 < plan.part_count < 1_600


def test_empty_file_is_one_empty_part() -> None:
    plan = plan_upload(0, 16 * MiB)
    assert plan.part_count == 1
    assert plan.part(1).length == 0


def test_file_too_large_for_multipart_is_a_clear_error() -> None:
    limits = UploadLimits(max_parts=10)
    with pytest.raises(ConfigError, match="above S3's"):
        plan_upload(60 * GiB, 16 * MiB, limits)


def test_tiny_limits_for_tests() -> None:
    plan = plan_upload(10, 3, UploadLimits(min_part_size=1))
    assert [p.length for p in plan.parts()] == [3, 3, 3, 1]


def test_part_number_outside_plan() -> None:
    with pytest.raises(IndexError):
        plan_upload(10 * MiB, 5 * MiB).part(3)
