"""What stapling opens and what it writes: no link inside a bundle, no open that blocks, the
link's target stapled (or, in the daemon, the link refused), hard links refused rather than
split, owner, group, mode and extended attributes kept, and the temporary files of killed
runs removed by the next run."""

from __future__ import annotations

import fcntl
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from service.cli import main
from service.emulator.sample_app import make_sample_app
from tests.support.artifacts import make_pkg
from tests.support.waiting import release_fifo, returns
from uploader.source_file import confine_to
from uploader.staple.check import check_staple
from uploader.staple.files import STALE_AFTER_SECONDS, StapleInputError, StaplingStopped
from uploader.staple.tickets import read_pkg_ticket, write_app_ticket, write_pkg_ticket

TICKET = b"s8ch" + bytes(4) + b"\x07" * 20


def fifo_plist(tmp_path: Path) -> tuple[Path, Path]:
    """An app whose Contents/Info.plist is a symlink to a FIFO nobody writes to."""
    app = make_sample_app(tmp_path, "Game")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    info = app / "Contents" / "Info.plist"
    info.unlink()
    info.symlink_to(fifo)
    return app, fifo


def test_cli_staple_of_an_info_plist_linked_to_a_fifo_fails_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    app, fifo = fifo_plist(tmp_path)
    monkeypatch.setenv("NOTARYD_CONFIG", "")
    monkeypatch.setenv("HOME", str(tmp_path))
    for command in (["staple", str(app)], ["staple", "--check", str(app)]):
        code = returns(lambda command=command: main(command), within=20,  # type: ignore[misc]
                       what=f"notaryd {' '.join(command)}", unblock=lambda: release_fifo(fifo))
        err = capsys.readouterr().err
        assert code == 1
        assert err == (f"notaryd: {app}/Contents/Info.plist: cannot read CFBundleExecutable (is a "
                       "symbolic link; notaryd reads only the file itself (give its real path)); "
                       "is Game.app a complete, signed app bundle?\n")


def test_a_code_resources_that_is_a_link_or_fifo_is_never_opened(tmp_path: Path) -> None:
    app = make_sample_app(tmp_path, "Game")
    secret = tmp_path / "secret"
    secret.write_bytes(b"s8ch outside")
    target = app / "Contents" / "CodeResources"
    target.symlink_to(secret)
    with pytest.raises(StapleInputError, match="exists and is not a regular file"):
        write_app_ticket(app, TICKET)
    assert secret.read_bytes() == b"s8ch outside" and target.is_symlink()
    assert check_staple(app).outcome.value == "not-stapled"  # the link is not read as a ticket
    target.unlink()
    os.mkfifo(target)
    result = returns(lambda: check_staple(app), within=20, what="check of a FIFO CodeResources",
                     unblock=lambda: release_fifo(target))
    assert result.outcome.value == "not-stapled"


def test_a_bundle_whose_contents_is_a_link_is_not_written_through(tmp_path: Path) -> None:
    app = make_sample_app(tmp_path / "a", "Game")
    elsewhere = tmp_path / "elsewhere"
    (app / "Contents").rename(elsewhere)
    (app / "Contents").symlink_to(elsewhere)
    with pytest.raises(StapleInputError, match=r"Contents: is a symbolic link"):
        write_app_ticket(app, TICKET)
    assert not (elsewhere / "CodeResources").exists()


def test_a_symlinked_pkg_staples_its_target_in_the_cli_and_is_refused_in_the_daemon(
    tmp_path: Path,
) -> None:
    (tmp_path / "real").mkdir()
    real = make_pkg(tmp_path / "real" / "Game-1.0.pkg")
    link = tmp_path / "Game.pkg"
    link.symlink_to(real)
    with confine_to([tmp_path]), pytest.raises(StapleInputError, match="symbolic link"):
        write_pkg_ticket(link, TICKET)
    assert read_pkg_ticket(real) is None
    write_pkg_ticket(link, TICKET)
    assert link.is_symlink() and link.resolve() == real  # the link is still the link
    assert read_pkg_ticket(real) == TICKET  # and the file it names is stapled
    assert sorted(os.listdir(tmp_path / "real")) == ["Game-1.0.pkg"]


def test_a_hard_linked_pkg_is_refused_not_split(tmp_path: Path) -> None:
    pkg = make_pkg(tmp_path / "Game.pkg")
    other = tmp_path / "Also.pkg"
    os.link(pkg, other)
    with pytest.raises(StapleInputError, match=r"Game\.pkg: has 2 hard links, which stapling would split"):
        write_pkg_ticket(pkg, TICKET)
    assert os.stat(pkg).st_ino == os.stat(other).st_ino and read_pkg_ticket(pkg) is None


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_owner_group_mode_and_extended_attributes_are_kept(tmp_path: Path) -> None:
    pkg = make_pkg(tmp_path / "Game.pkg")
    os.chown(pkg, 1234, 5678)
    os.chmod(pkg, 0o640)
    try:
        os.setxattr(pkg, "user.where-from", b"https://example.com/build/42")
        xattrs = True
    except OSError:
        xattrs = False  # a file system without user xattrs: owner and mode are still checked
    before = os.stat(pkg)
    write_pkg_ticket(pkg, TICKET)
    after = os.stat(pkg)
    assert after.st_ino != before.st_ino and read_pkg_ticket(pkg) == TICKET  # a new file...
    assert (after.st_uid, after.st_gid, stat.S_IMODE(after.st_mode)) == (1234, 5678, 0o640)
    if xattrs:
        assert os.getxattr(pkg, "user.where-from") == b"https://example.com/build/42"


def test_the_next_run_removes_temporary_files_that_killed_runs_left(tmp_path: Path) -> None:
    pkg = make_pkg(tmp_path / "Game.pkg")
    killed = tmp_path / ".notaryd-staple.Game.pkg.0123456789ab.tmp"
    killed.write_bytes(b"\x00" * 100_000)  # what a run killed mid-copy leaves
    old = time.time() - STALE_AFTER_SECONDS - 5
    os.utime(killed, (old, old))
    older_release = tmp_path / ".Game.pkg.k2j4h5g6.staple"  # notaryd 0.x named them so
    older_release.write_bytes(b"\x00" * 1000)
    os.utime(older_release, (old, old))
    live = tmp_path / ".notaryd-staple.Other.pkg.ba9876543210.tmp"
    live.write_bytes(b"\x00" * 10)
    os.utime(live, (old, old))
    with open(live, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # a run still writing it
        write_pkg_ticket(pkg, TICKET)
    assert sorted(os.listdir(tmp_path)) == [live.name, "Game.pkg"]


def test_a_stopped_staple_stops_copying_and_leaves_nothing(tmp_path: Path) -> None:
    pkg = make_pkg(tmp_path / "Game.pkg")
    original = pkg.read_bytes()
    stop = threading.Event()
    stop.set()
    with pytest.raises(StaplingStopped):
        write_pkg_ticket(pkg, TICKET, stop)
    assert pkg.read_bytes() == original and os.listdir(tmp_path) == ["Game.pkg"]
