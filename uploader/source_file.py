"""Opening the archive so that the file that is checked is the file that is read.

A path is only a name: between a check and a later ``open`` a local user can swap the file for a
symlink to a file outside the allowed roots, or for a FIFO that hangs whoever opens it. So the
archive is opened once, and every check is made on the *opened* descriptor:

* ``O_NOFOLLOW`` (when confined to allowed roots, i.e. in the daemon): a symlink as the last
  component is refused, never followed (the daemon resolved the path once, at POST; the CLI's
  own user may still hand it a link to their archive);
* ``O_NONBLOCK``: opening a FIFO returns at once instead of waiting for a writer (the flag is
  cleared again, it means nothing for regular files); ``fstat`` then refuses anything but a
  regular file;
* the descriptor's real path (``/proc/self/fd/N`` on Linux, ``fcntl(F_GETPATH)`` on macOS) must be
  under the allowed roots, which also defeats a symlink swapped in for a *directory* on the way;
* its identity (size, mtime, inode) must be the one that was checked (and hashed) before.

The allowed roots are a property of the caller (the daemon), not of the library, so they travel
in a context variable: ``confine_to(roots)`` around a run makes every ``open_source`` inside it,
including those on worker threads (``asyncio.to_thread`` copies the context), check the roots.
Blocking calls throughout: run them off the event loop.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import os
import stat
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from uploader.errors import NotarydError, SourceChangedError

if TYPE_CHECKING:
    from uploader.hashing import FileIdentity

_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
MAX_PATH_CHARS = 4096  # PATH_MAX on Linux; macOS is 1024, and the kernel says so itself

_allowed_roots: contextvars.ContextVar[tuple[Path, ...] | None] = contextvars.ContextVar(
    "notaryd_allowed_roots", default=None
)


class SourceRejected(NotarydError):
    """The archive is not something notaryd may read: the message says what and how to fix it."""

    def __init__(self, path: Path | str, why: str, *, outside_roots: bool = False) -> None:
        super().__init__(f"{path}: {why}")
        self.path = path
        self.why = why
        self.outside_roots = outside_roots


@contextlib.contextmanager
def confine_to(roots: Sequence[Path]) -> Iterator[None]:
    """Inside this block, ``open_source`` refuses files whose real path is outside ``roots``."""
    token = _allowed_roots.set(tuple(Path(os.path.realpath(root)) for root in roots))
    try:
        yield
    finally:
        _allowed_roots.reset(token)


def open_source(path: Path | str, expected: FileIdentity | None = None) -> int:
    """Open ``path`` for reading and check the opened file; returns the descriptor (caller closes).

    Raises ``SourceRejected`` (symlink, FIFO, directory, missing, unreadable, outside the roots)
    or ``SourceChangedError`` (not the file ``expected`` describes).
    """
    if "\0" in str(path):
        raise SourceRejected(repr(str(path)), "the path contains a NUL byte")
    if len(str(path)) > MAX_PATH_CHARS:
        raise SourceRejected(f"{str(path)[:80]}…", f"the path is longer than {MAX_PATH_CHARS} characters")
    roots = _allowed_roots.get()
    try:
        fd = os.open(path, _OPEN_FLAGS | (os.O_NOFOLLOW if roots is not None else 0))
    except OSError as exc:
        raise SourceRejected(path, _open_error(exc)) from None
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):
            raise SourceRejected(path, f"not a regular file ({_kind(opened.st_mode)}); give a .zip, .pkg or .dmg")
        os.set_blocking(fd, True)
        if roots is not None:
            _check_within(path, real_path(fd), roots, "the opened file")
        if expected is not None:
            what = _difference(expected, opened)
            if what:
                raise SourceChangedError(Path(path), what)
        return fd
    except BaseException:
        os.close(fd)
        raise


@contextlib.contextmanager
def opened_source(path: Path | str, expected: FileIdentity | None = None) -> Iterator[int]:
    """``open_source`` as a context manager that closes the descriptor."""
    fd = open_source(path, expected)
    try:
        yield fd
    finally:
        os.close(fd)


def real_path(fd: int) -> Path:
    """Where the open file really is, whatever name it was opened by."""
    if sys.platform == "darwin":
        import fcntl

        raw = fcntl.fcntl(fd, fcntl.F_GETPATH, bytes(1024))  # type: ignore[attr-defined,unused-ignore]
        return Path(os.fsdecode(raw.rstrip(b"\0")))
    return Path(os.readlink(f"/proc/self/fd/{fd}"))


def _difference(expected: FileIdentity, opened: os.stat_result) -> str | None:
    changes = []
    if opened.st_ino != expected.inode:
        changes.append("the file was replaced (inode changed)")
    if opened.st_size != expected.size:
        changes.append(f"size {expected.size} -> {opened.st_size} bytes")
    if opened.st_mtime_ns != expected.mtime_ns:
        changes.append("modification time changed")
    return ", ".join(changes) or None


def _open_error(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "is a symbolic link; notaryd reads only the file itself (give its real path)"
    if exc.errno == errno.ENOENT:
        return "no such file"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "the daemon's user cannot read it; fix its permissions"
    if exc.errno == errno.ENAMETOOLONG:
        return "the path is too long"
    if exc.errno == errno.ENOTDIR:
        return "a folder on the way is not a folder"
    return f"cannot open it: {exc.strerror or exc}"


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "not a plain file"


def check_source(
    path: Path | str, roots: Sequence[Path], expected: FileIdentity | None = None
) -> FileIdentity:
    """Open ``path`` confined to ``roots``, check it (and ``expected``), close it: its identity."""
    from uploader.hashing import FileIdentity  # hashing reads through this module

    with confine_to(roots), opened_source(path, expected) as fd:
        return FileIdentity.of_stat(Path(path), os.fstat(fd))


def check_bundle_folder(path: Path | str, roots: Sequence[Path]) -> None:
    """A bundle to be zipped is a real folder (not a symlink to one) under ``roots``.

    The folder is opened (``O_NOFOLLOW | O_DIRECTORY``) and its real path read from the
    descriptor, like ``open_source`` does for a file; the zipping itself never follows links.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise SourceRejected(path, _open_error(exc)) from None
    try:
        real = real_path(fd)
    finally:
        os.close(fd)
    _check_within(path, real, tuple(Path(os.path.realpath(root)) for root in roots), "the bundle")


def _check_within(path: Path | str, real: Path, roots: Sequence[Path], what: str) -> None:
    """``real`` (where the opened file really is) must be under one of ``roots`` (resolved)."""
    if not any(real.is_relative_to(root) for root in roots):
        raise SourceRejected(
            path,
            f"{what} is {real}, outside the allowed roots "
            f"({', '.join(str(r) for r in roots) or 'none'})",
            outside_roots=True,
        )
