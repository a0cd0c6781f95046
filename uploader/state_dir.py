"""The state directory is private: the directory and every directory in it 0700, every file 0600.

It holds temporary S3 credentials, submission ids and notary logs, so another local user must
not read it. ``prepare`` creates it that way, or tightens what it finds (one warning saying how
many entries it had to change), and turns "cannot create / cannot write" into one line naming the
directory and the fix. ``write_private`` writes a file there atomically, 0600 from the start.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
from pathlib import Path

from uploader.errors import ConfigError

log = logging.getLogger("notaryd.state")

DIR_MODE = 0o700
FILE_MODE = 0o600
_MAX_DEPTH = 2  # the state dir and logs/ are walked; deeper directories only tightened
_MAX_ENTRIES = 100_000  # bound the walk on a hostile or enormous directory


class StateDirError(ConfigError):
    """The state directory cannot be created, used or written; the message says what to do."""


def prepare(state_dir: Path) -> None:
    """Create ``state_dir`` (0700) or tighten it and its contents; refuse one that is not usable."""
    state_dir = Path(state_dir)
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        info = os.stat(state_dir)  # a symlink to a directory of one's own is fine
    except OSError as error:
        raise unusable(state_dir, error) from None
    if not stat.S_ISDIR(info.st_mode):
        raise StateDirError(
            f"state directory {state_dir} is not a directory (a file is in the way); "
            "remove it or set NOTARYD_STATE_DIR to a directory of your own"
        )
    if info.st_uid != os.getuid():
        raise StateDirError(
            f"state directory {state_dir} belongs to user id {info.st_uid}, not to you "
            f"({os.getuid()}); set NOTARYD_STATE_DIR to a directory of your own"
        )
    try:
        tightened = _tighten(state_dir.resolve())
    except OSError as error:
        raise unusable(state_dir, error) from None
    if os.statvfs(state_dir).f_flag & os.ST_RDONLY:
        raise unusable(state_dir, OSError(errno.EROFS, "read-only file system"))
    if not os.access(state_dir, os.W_OK | os.X_OK):
        raise unusable(state_dir, OSError(errno.EACCES, "not writable"))
    if tightened:
        log.warning(
            "tightened permissions of %d entries in the state directory %s to owner-only "
            "(directories 0700, files 0600): they were readable by other users",
            tightened, state_dir,
        )


def unusable(state_dir: Path, error: OSError) -> StateDirError:
    """One line for an OSError met while creating or writing the state directory."""
    reason = error.strerror or str(error)
    if error.errno in (errno.EEXIST, errno.ENOTDIR):
        return StateDirError(
            f"state directory {state_dir} is not a directory (a file is in the way); move the "
            "file or set NOTARYD_STATE_DIR to a directory of your own"
        )
    if error.errno == errno.EROFS:
        return StateDirError(
            f"state directory {state_dir} is on a read-only file system; set NOTARYD_STATE_DIR "
            "to a writable directory"
        )
    if error.errno in (errno.EACCES, errno.EPERM):
        return StateDirError(
            f"state directory {state_dir} is read-only for this user ({reason}); make it "
            "writable (chmod u+rwx) or set NOTARYD_STATE_DIR to a writable directory"
        )
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return StateDirError(disk_full_message(state_dir / "notaryd.sqlite3", 0))
    return StateDirError(
        f"cannot use the state directory {state_dir} ({reason}); set NOTARYD_STATE_DIR to a "
        "writable directory of your own"
    )


def _tighten(top: Path) -> int:
    """chmod what is looser than owner-only; returns how many entries changed. No symlinks."""
    changed = 0
    seen = 0
    pending: list[tuple[Path, int]] = [(top, 0)]
    while pending:
        directory, depth = pending.pop()
        if _chmod_if_loose(directory, DIR_MODE):
            changed += 1
        if depth >= _MAX_DEPTH:
            continue
        with os.scandir(directory) as entries:
            for entry in entries:
                seen += 1
                if seen > _MAX_ENTRIES:
                    return changed
                if entry.is_dir(follow_symlinks=False):
                    pending.append((Path(entry.path), depth + 1))
                elif entry.is_file(follow_symlinks=False) and _chmod_if_loose(
                    Path(entry.path), FILE_MODE
                ):
                    changed += 1
    return changed


def _chmod_if_loose(path: Path, mode: int) -> bool:
    current = stat.S_IMODE(os.lstat(path).st_mode)
    if current & 0o077 == 0:
        return False
    os.chmod(path, mode)  # callers checked with lstat that it is no symlink
    return True


def write_private(path: Path, data: bytes) -> None:
    """Write ``path`` atomically (temporary file, then rename), 0600 from creation; blocking.

    A full disk or a read-only directory is a one-line ``StateDirError``.
    """
    tmp = path.with_name(path.name + ".tmp")
    fd = -1
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            fd = -1
            handle.write(data)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException as error:
        if fd >= 0:
            os.close(fd)
        tmp.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StateDirError(disk_full_message(path, len(data))) from error
        if isinstance(error, OSError):
            raise unusable(path.parent, error) from error
        raise


def disk_full_message(path: Path, needed: int) -> str:
    """'the disk mounted at M (holding D; F MiB free) is full: ... free at least N MiB'."""
    directory = path.parent
    where = f"the disk holding {directory}"
    free = free_bytes(directory)
    if free is not None:
        mount = directory.resolve()
        while not os.path.ismount(mount) and mount != mount.parent:
            mount = mount.parent
        where = f"the disk mounted at {mount} (holding {directory}; {in_mib(free)} free)"
    return (
        f"{where} is full: {path.name} cannot be written. Free at least "
        f"{in_mib(max(needed, 1024 * 1024))} there, "
        "or set NOTARYD_STATE_DIR to a disk with room, then re-run"
    )


def free_bytes(directory: Path) -> int | None:
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return None


def in_mib(count: int) -> str:
    if count < 1024 * 1024:
        return f"{count / 1024:,.0f} KiB"
    return f"{count / (1024 * 1024):,.0f} MiB"
