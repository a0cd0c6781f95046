"""The archive is opened once and checked on the descriptor: symlinks, FIFOs, swapped folders,
replaced files and files outside the allowed roots are refused, by hashing and upload alike."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from uploader.config import UploadLimits
from uploader.errors import SourceChangedError
from uploader.hashing import HashingStopped, hash_file, hash_file_sync
from uploader.planning import plan_upload
from uploader.source_file import (
    FileIdentity,
    SourceRejected,
    check_source,
    confine_to,
    open_source,
    real_path,
)

TINY = UploadLimits(min_part_size=1)


@pytest.fixture
def world(tmp_path: Path) -> tuple[Path, Path]:
    """(allowed root with App.zip in it, a secret file outside the root)."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "App.zip").write_bytes(b"the real archive")
    secret = tmp_path / "outside" / "secret.key"
    secret.parent.mkdir()
    secret.write_bytes(b"-----BEGIN PRIVATE KEY-----")
    return root, secret


def test_a_symlink_is_refused_not_followed(world: tuple[Path, Path]) -> None:
    root, secret = world
    link = root / "Link.zip"
    link.symlink_to(secret)
    with confine_to([root]), pytest.raises(SourceRejected, match="symbolic link"):
        open_source(link)
    (root / "Latest.zip").symlink_to(root / "App.zip")  # even one that stays inside the roots
    with confine_to([root]), pytest.raises(SourceRejected, match="symbolic link"):
        open_source(root / "Latest.zip")
    fd = open_source(root / "Latest.zip")  # the CLI (no roots): its user's own link is fine
    os.close(fd)


def test_a_hard_link_to_a_file_outside_the_roots_is_refused(world: tuple[Path, Path]) -> None:
    root, secret = world
    linked = root / "Linked.zip"
    os.link(secret, linked)  # one inode, two names: one inside the roots, one outside
    with pytest.raises(SourceRejected) as refused:
        check_source(linked, [root])
    assert str(refused.value) == (f"{linked}: has 2 hard links; the daemon reads only files with one "
                                  "name (another could be outside the allowed roots): give a copy "
                                  "(cp, not ln)")
    assert not refused.value.outside_roots
    os.close(open_source(linked))  # the CLI reads its own user's hard links


def test_a_fifo_is_refused_at_once_instead_of_hanging(world: tuple[Path, Path]) -> None:
    root, _ = world
    fifo = root / "Pipe.zip"
    os.mkfifo(fifo)  # no writer: a blocking open would wait forever
    with pytest.raises(SourceRejected, match="not a regular file \\(a FIFO\\)"):
        open_source(fifo)
    with pytest.raises(SourceRejected, match="a directory"):
        open_source(root)


def test_a_folder_swapped_for_a_symlink_is_caught_by_the_real_path(world: tuple[Path, Path]) -> None:
    root, secret = world
    builds = root / "builds"
    builds.symlink_to(secret.parent)  # O_NOFOLLOW guards only the last component
    via_link = builds / "secret.key"
    fd = open_source(via_link)  # unconfined (the CLI): allowed, and it really is the secret
    try:
        assert real_path(fd) == secret
    finally:
        os.close(fd)
    with confine_to([root]), pytest.raises(SourceRejected, match="outside the allowed roots") as caught:
        open_source(via_link)
    assert caught.value.outside_roots
    assert check_source(root / "App.zip", [root]).size == len(b"the real archive")


def test_a_replaced_file_does_not_match_the_identity_that_was_checked(world: tuple[Path, Path]) -> None:
    root, _ = world
    archive = root / "App.zip"
    checked = check_source(archive, [root])
    replacement = root / "new.zip"
    replacement.write_bytes(b"the real archive")  # same size, another file
    os.replace(replacement, archive)
    with pytest.raises(SourceChangedError, match="inode changed"):
        open_source(archive, checked)
    fd = open_source(archive, FileIdentity.of(archive))
    os.close(fd)


def test_path_input_that_no_kernel_takes_is_one_clear_line(world: tuple[Path, Path]) -> None:
    root, _ = world
    with pytest.raises(SourceRejected, match="NUL byte"):
        open_source(f"{root}/a\0b.zip")
    with pytest.raises(SourceRejected, match="longer than 4096"):
        open_source(str(root) + "/" + "a" * 5000)


async def test_hashing_reads_only_through_the_checked_descriptor(world: tuple[Path, Path]) -> None:
    root, secret = world
    link = root / "Game.zip"
    link.symlink_to(secret)
    plan = plan_upload(secret.stat().st_size, 1 << 20, TINY)
    with confine_to([root]), pytest.raises(SourceRejected, match="symbolic link"):
        await hash_file(link, plan)
    (root / "dir").symlink_to(secret.parent)
    with confine_to([root]), pytest.raises(SourceRejected, match="outside the allowed roots"):
        await hash_file(root / "dir" / "secret.key", plan)
    archive = root / "App.zip"
    with confine_to([root]):
        digest = await hash_file(archive, plan_upload(archive.stat().st_size, 1 << 20, TINY))
    assert digest.identity == FileIdentity.of(archive)


def test_a_stopped_hashing_pass_ends_before_reading(world: tuple[Path, Path]) -> None:
    root, _ = world
    archive = root / "App.zip"
    stop = threading.Event()
    stop.set()
    with pytest.raises(HashingStopped):
        hash_file_sync(archive, plan_upload(archive.stat().st_size, 1 << 20, TINY), stop=stop)
