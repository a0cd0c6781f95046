"""Packaging a bundle like `ditto -c -k --keepParent`, hashing in the same pass."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import sys
import zipfile
from pathlib import Path

import pytest

from service.emulator.sample_app import make_sample_app
from tests.support.files import small_tmpfs
from uploader.bundle_zip import archive_dir, package_bundle, package_for_submission
from uploader.config import MiB, UploadLimits
from uploader.errors import ConfigError
from uploader.hashing import ChecksumAlgorithm, hash_file_sync, part_checksum_sync
from uploader.planning import plan_upload


def tree(tmp_path: Path) -> Path:
    app = make_sample_app(tmp_path, "Game")
    resources = app / "Contents" / "Resources"
    (resources / "random.bin").write_bytes(os.urandom(3 * MiB + 17))
    (resources / "text.txt").write_text("compress me " * 100_000)
    os.symlink("../MacOS", app / "Contents" / "Frameworks")  # a symlink to a folder
    os.symlink("/etc/hosts", resources / "outside")  # kept as a link, never followed
    os.utime(resources / "text.txt", (0, 0))  # before 1980: zip cannot say it, must not fail
    script = resources / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o750)
    return app


def test_zip_matches_the_tree_and_the_digest_matches_the_bytes(tmp_path: Path) -> None:
    app = tree(tmp_path)
    archive = tmp_path / "out" / "Game.zip"
    reports: list[tuple[int, int]] = []
    digest = package_bundle(app, archive, part_size=5 * MiB,
                            on_progress=lambda done, total: reports.append((done, total)))
    files = sum(p.stat().st_size for p in app.rglob("*") if p.is_file() and not p.is_symlink())
    assert reports[-1] == (files, files)  # progress counts the bundle's bytes read, to the end
    # The streamed digest is what a separate hashing pass over the finished zip computes.
    again = hash_file_sync(archive, plan_upload(archive.stat().st_size, 5 * MiB))
    assert (digest.sha256, digest.part_checksums, digest.full_checksum) == (
        again.sha256, again.part_checksums, again.full_checksum)
    assert digest.identity.size == archive.stat().st_size and len(digest.part_checksums) >= 1

    with zipfile.ZipFile(archive) as z:
        infos = {i.filename: i for i in z.infolist()}
        assert next(iter(infos)) == "Game.app/"  # the bundle folder at the top
        assert not any("__MACOSX" in name for name in infos)
        for name, info in infos.items():
            source = app.parent / name.rstrip("/")
            mode = os.lstat(source).st_mode
            assert info.external_attr >> 16 == mode and info.create_system == 3, name
            if stat.S_ISLNK(mode):
                assert z.read(info) == os.fsencode(os.readlink(source))
            elif stat.S_ISREG(mode):
                assert z.read(info) == source.read_bytes()
        random = infos["Game.app/Contents/Resources/random.bin"]
        text = infos["Game.app/Contents/Resources/text.txt"]
        assert random.compress_type == zipfile.ZIP_STORED  # incompressible: stored
        assert text.compress_type == zipfile.ZIP_DEFLATED and text.compress_size < 10_000
        assert "Game.app/Contents/Frameworks" in infos  # the link, not the folder behind it
        assert "Game.app/Contents/Frameworks/" not in infos


@pytest.mark.parametrize("algorithm", list(ChecksumAlgorithm))
def test_zipper_part_checksums_are_the_hashers_over_the_written_zip(
    tmp_path: Path, algorithm: ChecksumAlgorithm
) -> None:
    app = tree(tmp_path)
    archive = tmp_path / "out" / "Game.zip"
    limits = UploadLimits(min_part_size=1)  # parts of 1 MiB: several, the last one partial
    digest = package_bundle(app, archive, part_size=MiB, limits=limits, algorithm=algorithm)
    plan = plan_upload(archive.stat().st_size, MiB, limits)
    assert digest.algorithm is algorithm and plan.part_count > 2
    assert digest == hash_file_sync(archive, plan, algorithm)
    # each part re-read on its own, and the SHA-256 of the file, agree with the streamed pass
    assert digest.part_checksums == tuple(part_checksum_sync(archive, part, algorithm)
                                          for part in plan.parts())
    assert digest.sha256 == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert all(digest.part_checksums) == (algorithm is not ChecksumAlgorithm.NONE)
    assert bool(digest.full_checksum) == algorithm.is_crc


def test_part_plan_follows_the_real_size_near_the_part_limit(tmp_path: Path) -> None:
    app = tree(tmp_path)
    limits = UploadLimits(max_parts=3)  # forces bigger parts than asked for
    digest = package_bundle(app, tmp_path / "Game.zip", part_size=5 * MiB, limits=limits)
    size = (tmp_path / "Game.zip").stat().st_size
    assert digest.part_size == plan_upload(size, 5 * MiB, limits).part_size
    assert len(digest.part_checksums) == plan_upload(size, 5 * MiB, limits).part_count


def test_special_files_are_refused_with_the_path(tmp_path: Path) -> None:
    app = make_sample_app(tmp_path, "Game")
    fifo = app / "Contents" / "Resources" / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match=r"pipe.*special file"):
        package_bundle(app, tmp_path / "Game.zip", part_size=5 * MiB)
    assert not (tmp_path / "Game.zip").exists()
    assert not (tmp_path / "Game.zip.partial").exists()


def test_unchanged_bundle_reuses_its_zip_and_a_change_repackages(tmp_path: Path) -> None:
    app = tree(tmp_path)
    state = tmp_path / "state"
    first = package_for_submission(app, state, part_size=5 * MiB)
    assert first.digest is not None and first.archive.is_file()
    inode = first.archive.stat().st_ino
    second = package_for_submission(app, state, part_size=5 * MiB)
    assert second.digest is None and second.archive.stat().st_ino == inode  # reused
    (app / "Contents" / "Resources" / "text.txt").write_text("changed")
    third = package_for_submission(app, state, part_size=5 * MiB)
    assert third.digest is not None and third.digest.sha256 != first.digest.sha256



async def test_packaging_failure_is_one_clear_line(tmp_path: Path) -> None:
    from uploader.artifact import Artifact
    from uploader.config import EngineConfig
    from uploader.notary.ends import prepare

    app = make_sample_app(tmp_path, "Game")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=r"packaging the bundle failed .*NOTARYD_WORK_DIR"):
        await prepare(Artifact.open(app), blocker / "state", EngineConfig())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="tmpfs: Linux")
def test_a_full_disk_leaves_no_partial_zip(tmp_path: Path) -> None:
    app = make_sample_app(tmp_path, "Game")
    (app / "Contents" / "Resources" / "random.bin").write_bytes(os.urandom(3 * MiB))
    state = tmp_path / "state"
    with small_tmpfs(archive_dir(state), 1 * MiB) as archives:
        with pytest.raises(OSError) as raised:
            package_for_submission(app, state, part_size=5 * MiB)
        assert raised.value.errno == errno.ENOSPC
        assert os.listdir(archives) == []  # the partial zip is what filled the disk: gone
        assert shutil.disk_usage(archives).used < MiB // 2
