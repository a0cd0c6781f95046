"""A local user swaps a bundle's members while notaryd zips it: nothing outside the bundle gets
into the zip, nothing hangs, the run fails naming the member, and no zip is left behind.

The swaps are made from the ``before_open`` hook, between the walk that listed the member and
the open that reads it: deterministic, no timing.
"""

from __future__ import annotations

import os
import stat
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from service.emulator.sample_app import make_sample_app
from uploader.bundle_walk import PackagingStopped
from uploader.bundle_zip import BundleChangedError, package_bundle, package_for_submission
from uploader.config import MiB
from uploader.errors import NotarydError
from uploader.source_file import SourceRejected, confine_to

SECRET = b"the secret outside the bundle " * 100
MEMBER = "Game.app/Contents/Resources/text.txt"


@pytest.fixture
def app(tmp_path: Path) -> Path:
    app = make_sample_app(tmp_path / "build", "Game")
    (app / "Contents" / "Resources" / "text.txt").write_bytes(b"a resource " * 300)
    return app


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    (tmp_path / "outside").mkdir()
    path = tmp_path / "outside" / "secret.txt"
    path.write_bytes(SECRET)
    return path


def on(name: str, swap: Callable[[], None], *, nth: int = 1) -> Callable[[str], None]:
    """A ``before_open`` hook that swaps once, just before the ``nth`` open of ``name``
    (a folder is opened by the walk, then again by the pass that reads its files)."""
    seen = 0

    def hook(relative: str) -> None:
        nonlocal seen
        if relative == name:
            seen += 1
            if seen == nth:
                swap()

    return hook


def package(app: Path, tmp_path: Path, hook: Callable[[str], None]) -> Path:
    archive = tmp_path / "zips" / "Game.zip"
    package_bundle(app, archive, part_size=5 * MiB, before_open=hook)
    return archive


def assert_refused(app: Path, tmp_path: Path, hook: Callable[[str], None], member: str,
                   why: str) -> None:
    with pytest.raises(BundleChangedError) as raised:
        package(app, tmp_path, hook)
    message = str(raised.value)
    assert f"({member}: " in message and why in message and "\n" not in message, message
    assert not (tmp_path / "zips").exists() or os.listdir(tmp_path / "zips") == []


def test_a_member_swapped_for_a_symlink_is_never_followed(app: Path, secret: Path, tmp_path: Path) -> None:
    text = app / "Contents" / "Resources" / "text.txt"

    def swap() -> None:
        text.unlink()
        text.symlink_to(secret)

    assert_refused(app, tmp_path, on(MEMBER, swap), MEMBER, "symbolic link")


def test_a_member_swapped_for_a_fifo_fails_at_once(app: Path, tmp_path: Path) -> None:
    text = app / "Contents" / "Resources" / "text.txt"

    def swap() -> None:
        text.unlink()
        os.mkfifo(text)  # no writer: a blocking open would wait for ever

    assert_refused(app, tmp_path, on(MEMBER, swap), MEMBER, "not a regular file (a FIFO)")


def test_a_member_swapped_for_a_link_to_dev_zero_is_not_read(app: Path, tmp_path: Path) -> None:
    text = app / "Contents" / "Resources" / "text.txt"

    def swap() -> None:
        text.unlink()
        text.symlink_to("/dev/zero")

    assert_refused(app, tmp_path, on(MEMBER, swap), MEMBER, "symbolic link")


def test_a_member_swapped_for_a_device_node_is_not_read(app: Path, tmp_path: Path) -> None:
    text = app / "Contents" / "Resources" / "text.txt"

    def swap() -> None:
        text.unlink()
        try:
            os.mknod(text, stat.S_IFCHR | 0o644, os.makedev(1, 5))  # what /dev/zero is
        except PermissionError:
            pytest.skip("making a device node needs root")

    assert_refused(app, tmp_path, on(MEMBER, swap), MEMBER, "not a regular file (a character device)")


def test_a_member_rewritten_and_put_back_with_its_mtime_is_caught(app: Path, tmp_path: Path) -> None:
    text = app / "Contents" / "Resources" / "text.txt"
    before = text.stat()

    def rewrite_in_place() -> None:  # same inode, same size, mtime set back: only ctime differs
        with open(text, "r+b") as f:
            f.write(SECRET[: before.st_size])
        os.utime(text, ns=(before.st_atime_ns, before.st_mtime_ns))

    assert_refused(app, tmp_path, on(MEMBER, rewrite_in_place), MEMBER, "it was modified")
    assert text.stat().st_ino == before.st_ino and text.stat().st_mtime_ns == before.st_mtime_ns


def test_a_folder_swapped_for_a_symlink_during_the_walk_is_never_entered(
    app: Path, secret: Path, tmp_path: Path
) -> None:
    resources = app / "Contents" / "Resources"

    def swap() -> None:
        resources.rename(tmp_path / "moved-away")
        resources.symlink_to(secret.parent)

    folder = "Game.app/Contents/Resources/"
    assert_refused(app, tmp_path, on(folder, swap), folder, "symbolic link")


def test_a_folder_swapped_after_the_walk_is_caught_before_its_files_are_read(
    app: Path, secret: Path, tmp_path: Path
) -> None:
    resources = app / "Contents" / "Resources"

    def swap() -> None:  # the walk is over: the read pass opens Resources/ again
        resources.rename(tmp_path / "moved-away")
        resources.symlink_to(secret.parent)

    folder = "Game.app/Contents/Resources/"
    assert_refused(app, tmp_path, on(folder, swap, nth=2), folder, "symbolic link")


def test_a_folder_replaced_by_another_real_folder_is_caught(app: Path, secret: Path, tmp_path: Path) -> None:
    resources = app / "Contents" / "Resources"
    impostor = tmp_path / "impostor"
    impostor.mkdir()
    (impostor / "text.txt").write_bytes(SECRET)

    def swap() -> None:
        resources.rename(tmp_path / "moved-away")
        impostor.rename(resources)

    folder = "Game.app/Contents/Resources/"
    assert_refused(app, tmp_path, on(folder, swap, nth=2), folder, "replaced by another folder")


def test_no_entry_below_a_symlink_and_links_are_stored_as_links(app: Path, secret: Path, tmp_path: Path) -> None:
    os.symlink(secret.parent, app / "Contents" / "Outside")
    with zipfile.ZipFile(package(app, tmp_path, lambda _: None)) as archive:
        names = archive.namelist()
        assert "Game.app/Contents/Outside" in names
        assert not any(name.startswith("Game.app/Contents/Outside/") for name in names)
        assert archive.read("Game.app/Contents/Outside") == os.fsencode(secret.parent)
        assert all(SECRET not in archive.read(name) for name in names)


def test_a_member_added_while_zipping_fails_the_reuse_stamp(app: Path, tmp_path: Path) -> None:
    added = app / "Contents" / "Resources" / "late.txt"
    with pytest.raises(BundleChangedError, match="changed while notaryd was zipping it"):
        package_for_submission(app, tmp_path / "state", part_size=5 * MiB,
                               before_open=on(MEMBER, lambda: added.write_text("late")))
    assert os.listdir(tmp_path / "state" / "archives") == []


def test_in_the_daemon_a_hard_linked_member_is_refused(app: Path, secret: Path, tmp_path: Path) -> None:
    os.link(secret, app / "Contents" / "Resources" / "linked.txt")
    roots = [tmp_path / "build"]
    with confine_to(roots), pytest.raises(SourceRejected, match=r"linked\.txt: has 2 hard links"):
        package(app, tmp_path, lambda _: None)
    # The CLI's own user may zip their own hard links.
    with zipfile.ZipFile(package(app, tmp_path, lambda _: None)) as archive:
        assert archive.read("Game.app/Contents/Resources/linked.txt") == SECRET


def test_in_the_daemon_a_bundle_behind_a_symlink_is_refused(app: Path, tmp_path: Path) -> None:
    link = tmp_path / "build" / "Link.app"
    link.symlink_to(app)
    with confine_to([tmp_path / "build"]), pytest.raises(SourceRejected, match="symbolic link"):
        package(link, tmp_path, lambda _: None)


def test_a_member_name_that_is_not_utf8_is_refused_in_one_line(app: Path, tmp_path: Path) -> None:
    (app / "Contents" / "Resources" / os.fsdecode(b"caf\xe9.txt")).write_text("latin-1 name")
    with pytest.raises(NotarydError) as raised:
        package(app, tmp_path, lambda _: None)
    message = str(raised.value)
    assert message.endswith("caf\\xe9.txt: the name is not valid UTF-8; rename it (notaryd and "
                            "the notary service handle only UTF-8 names)"), message
    assert not (tmp_path / "zips").exists() or os.listdir(tmp_path / "zips") == []


def test_a_stopped_packaging_ends_before_reading_and_leaves_no_zip(app: Path, tmp_path: Path) -> None:
    stop = threading.Event()
    stop.set()  # the job was cancelled: its packaging thread must not read on to the end
    read: list[str] = []
    with pytest.raises(PackagingStopped):
        package_bundle(app, tmp_path / "zips" / "Game.zip", part_size=5 * MiB, stop=stop,
                       before_open=read.append)
    assert os.listdir(tmp_path / "zips") == []
    assert len([name for name in read if not name.endswith("/")]) == 1  # stopped in the first file

