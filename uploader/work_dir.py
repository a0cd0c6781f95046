"""The work dir: where zips made from bundles live, who still needs them, and pruning the rest.

Zips go to ``<work dir>/archives/`` (``NOTARYD_WORK_DIR``, default the state dir; names from
``bundle_zip.archive_path_for``), a private (0700) folder. A zip is kept while

* a run uses it: a notarisation of a bundle holds a shared ``flock`` on ``<zip>.lock`` from
  before packaging to its end (``ZipLock``); ``prune`` takes that lock exclusively without waiting
  and skips what it cannot get, so a zip being written or uploaded is never removed;
* an unfinished submission still has to upload it (created or uploading, its credentials not
  expired), so that a killed run resumes from it (``needed_by_submissions``);
* the caller says so (runs it knows are queued or under way).

A failed or cancelled run removes its own zip (``PreparedInput.discard``); ``prune`` removes what
interrupted runs left behind. ``check_room`` refuses to start a zip the disk cannot hold.
Blocking calls throughout, except ``needed_by_submissions``: run them off the event loop.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from uploader.bundle_walk import BundleTree
from uploader.bundle_zip import archive_dir, archive_path_for
from uploader.database import Database
from uploader.errors import ConfigError
from uploader.lifecycle import SubmissionState
from uploader.state_dir import DIR_MODE, FILE_MODE, free_bytes, in_mib

# What packaging leaves beside a zip: its tree stamp, the zip being written, the run's lock.
COMPANION_SUFFIXES = (".tree", ".partial", ".lock")
_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def ensure_private_dir(directory: Path) -> None:
    """Create ``directory`` (and parents) owner-only, or tighten it if it is looser."""
    directory.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    info = os.lstat(directory)
    if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and info.st_mode & 0o077:
        os.chmod(directory, DIR_MODE)


def lock_path(archive: Path) -> Path:
    return archive.with_name(archive.name + ".lock")


class ZipLock:
    """A run's claim on the zip of a bundle: shared (runs do not wait for each other)."""

    def __init__(self, archive: Path) -> None:
        self.path = lock_path(archive)
        self._fd = -1

    def acquire(self) -> None:
        """Blocking: waits only while a prune holds the lock (the time it takes to unlink)."""
        ensure_private_dir(self.path.parent)
        while True:
            fd = os.open(self.path, _OPEN_FLAGS, FILE_MODE)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)
                if _same_file(fd, self.path):  # a prune may have unlinked it meanwhile
                    self._fd = fd
                    return
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)

    def release(self) -> None:
        """Let go; the last run out removes the lock file (taken exclusively, so no one waits
        on it: ``acquire`` re-checks that the file it locked is still the one named)."""
        if self._fd < 0:
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pass  # another run holds it too
        else:
            if _same_file(self._fd, self.path):
                self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)  # closing drops the flock
            self._fd = -1


def _same_file(fd: int, path: Path) -> bool:
    try:
        named = os.lstat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def check_room(bundle: Path, work_dir: Path) -> None:
    """Refuse, with the numbers, to zip a bundle larger than the free space in the work dir.

    The bundle's size (its files' bytes) bounds the zip: members that are already compressed are
    stored as they are. An earlier run's finished zip may be reused, so it is not checked then.
    """
    archive = archive_path_for(bundle, work_dir)
    if archive.is_file() and archive.with_name(archive.name + ".tree").is_file():
        return
    with BundleTree(bundle) as tree:  # the same safe walk packaging does (links not followed)
        needed = sum(m.st.st_size for m in tree.walk() if stat.S_ISREG(m.st.st_mode))
    ensure_private_dir(archive.parent)
    free = free_bytes(archive.parent)
    if free is not None and needed > free:
        raise ConfigError(
            f"{bundle}: zipping it needs up to {in_mib(needed)} in {archive.parent}, but only "
            f"{in_mib(free)} is free there; free {in_mib(needed - free)} or more, or set "
            "NOTARYD_WORK_DIR to a disk with room (`notaryd state prune` removes old zips)"
        )


async def needed_by_submissions(db: Database, now: float | None = None) -> set[Path]:
    """Zips that an unfinished submission still has to upload (its credentials still valid)."""
    from uploader.notary.store import SubmissionStore

    now = time.time() if now is None else now
    uploading = (SubmissionState.CREATED, SubmissionState.UPLOADING)
    return {Path(record.path)
            for record in await SubmissionStore(db).list_submissions(include_finished=False)
            if record.state in uploading and record.credentials_expire_at > now}


@dataclass
class PruneReport:
    freed_bytes: int = 0
    removed: list[Path] = field(default_factory=list)  # zips (their companions go with them)
    kept: list[Path] = field(default_factory=list)  # needed, in use, or younger than asked

    def summary(self, directories: Iterable[Path]) -> str:
        where = ", ".join(str(d) for d in directories)
        kept = f"; kept {len(self.kept)} still needed or in use" if self.kept else ""
        if not self.removed:
            return f"nothing to remove in {where}{kept}"
        return (f"freed {in_mib(self.freed_bytes)}: removed {len(self.removed)} zip(s) made "
                f"from bundles, with their temporary files, from {where}{kept}")


def prune(work_dirs: Iterable[Path], keep: set[Path], *, older_than_seconds: float | None = None,
          now: float | None = None) -> PruneReport:
    """Remove the zips (and companions) in each ``<work dir>/archives`` no one needs."""
    now = time.time() if now is None else now
    report = PruneReport()
    kept_resolved = {os.path.abspath(path) for path in keep}
    for directory in dict.fromkeys(archive_dir(d) for d in work_dirs):
        for archive, files in sorted(_groups(directory).items()):
            newest = max(st.st_mtime for st in files.values())
            young = older_than_seconds is not None and newest > now - older_than_seconds
            needed = os.path.abspath(archive) in kept_resolved
            freed = None if needed or young else _remove_unless_in_use(archive, files)
            if freed is None:
                report.kept.append(archive)
            else:
                report.freed_bytes += freed
                report.removed.append(archive)
    return report


def _groups(directory: Path) -> dict[Path, dict[Path, os.stat_result]]:
    """Each zip's path -> its files that exist (regular files only; links are never touched)."""
    groups: dict[Path, dict[Path, os.stat_result]] = {}
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return groups
    for entry in entries:
        name = entry.name
        base = next((name[: -len(s)] for s in COMPANION_SUFFIXES if name.endswith(s)), name)
        if not base.endswith(".zip") or not entry.is_file(follow_symlinks=False):
            continue
        groups.setdefault(directory / base, {})[Path(entry.path)] = entry.stat(follow_symlinks=False)
    return groups


def _remove_unless_in_use(archive: Path, files: dict[Path, os.stat_result]) -> int | None:
    """Unlink the group under the exclusive lock; None when a run holds it."""
    ensure_private_dir(archive.parent)
    fd = os.open(lock_path(archive), _OPEN_FLAGS, FILE_MODE)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            raise
        freed = 0
        for path, st in files.items():
            if path != lock_path(archive):
                path.unlink(missing_ok=True)
                freed += st.st_size
        lock_path(archive).unlink(missing_ok=True)  # last, while held: see ZipLock.acquire
        return freed
    finally:
        os.close(fd)
