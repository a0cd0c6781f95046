"""NOTARYD_CHECKSUM: parsed in one place, reaches the engine, bad values named with the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.settings import load_settings
from uploader.config import UploadLimits
from uploader.errors import ConfigError
from uploader.hashing import ChecksumAlgorithm, hash_file_sync, part_checksum_sync
from uploader.planning import plan_upload


def test_default_is_crc64nvme_and_each_name_is_accepted(tmp_path: Path) -> None:
    empty = tmp_path / "config.toml"
    empty.write_text("")
    assert load_settings({}, empty).engine_config().checksum is ChecksumAlgorithm.CRC64NVME
    for name in ("crc64nvme", "CRC32C", "crc32", "sha256", "none"):
        settings = load_settings({"NOTARYD_CHECKSUM": name}, empty)
        assert settings.engine_config().checksum.value == name.upper()


def test_an_unknown_name_is_one_line_naming_the_variable_and_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        empty = tmp_path / "config.toml"
        empty.write_text("")
        load_settings({"NOTARYD_CHECKSUM": "md5"}, empty)
    message = str(caught.value)
    assert "NOTARYD_CHECKSUM" in message and "crc32c" in message and "'md5'" in message
    assert "\n" not in message


@pytest.mark.parametrize("algorithm", list(ChecksumAlgorithm))
def test_hashing_pass_and_part_re_read_agree_for_every_algorithm(
    tmp_path: Path, algorithm: ChecksumAlgorithm
) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(range(256)) * 1000)
    plan = plan_upload(256_000, 100_000, UploadLimits(min_part_size=1))
    digest = hash_file_sync(path, plan, algorithm)
    assert digest.part_checksums == tuple(
        part_checksum_sync(path, part, algorithm) for part in plan.parts())
    assert bool(digest.full_checksum) == algorithm.is_crc

