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
The same primitives serve every other file notaryd reads or writes on a user's behalf (the
members of a bundle it zips or checks, the files stapling reads and replaces): ``open_regular``
(never blocks, never follows a last-component link unless asked, regular files only),
``open_folder`` (the same for a folder, to open what is inside *relative to it*),
``identity_change`` (device, inode, size, mtime, ctime: a rewrite with the mtime set back still
changes the ctime, which no user can set), ``refuse_hard_link`` (inside the allowed roots a file
with a second name may be reachable from outside them) and ``refuse_non_utf8``.

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
from dataclasses import dataclass
from pathlib import Path

from uploader.errors import NotarydError, SourceChangedError

_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
MAX_PATH_CHARS = 4096  # PATH_MAX on Linux; macOS is 1024, and the kernel says so itself

_allowed_roots: contextvars.ContextVar[tuple[Path, ...] | None] = contextvars.ContextVar(
    "notaryd_allowed_roots", default=None
)


@dataclass(frozen=True)
class FileIdentity:
    """Which file, as one stat sees it (cheap).

    ``difference`` (size, mtime, inode) says whether an upload may be resumed; metadata-only
    changes (chmod, xattrs) do not stop one, and the part checksums catch changed bytes anyway.
    A stored *hash* is trusted only for an identical identity, ``ctime_ns`` included: every
    write sets the ctime to now and no user can set it back (``touch``/``cp -p`` restore only
    the mtime), so an in-place rewrite with the mtime restored is hashed again.
    """

    path: Path
    size: int
    mtime_ns: int
    inode: int
    ctime_ns: int  # 0: unknown (a row written before the ctime was recorded)

    @classmethod
    def of(cls, path: Path) -> FileIdentity:
        return cls.of_stat(path, os.stat(path))

    @classmethod
    def of_stat(cls, path: Path, st: os.stat_result) -> FileIdentity:
        return cls(Path(os.path.abspath(path)), st.st_size, st.st_mtime_ns, st.st_ino,
                   st.st_ctime_ns)

    def difference(self, other: FileIdentity) -> str | None:
        """A human description of what changed (size, mtime, inode), or None when none did."""
        changes = []
        if self.size != other.size:
            changes.append(f"size {self.size} -> {other.size} bytes")
        if self.mtime_ns != other.mtime_ns:
            changes.append("modification time changed")
        if self.inode != other.inode:
            changes.append("the file was replaced (inode changed)")
        return ", ".join(changes) or None


@dataclass(frozen=True)
class SharedIdentity:
    """A file's identity across hosts: size, mtime and SHA-256.

    Inode numbers and ctimes differ between the NFS/SMB clients of one shared volume, so a host
    taking over another's work cannot use ``FileIdentity``'s strict match for a stored hash.
    A file whose size and mtime are the ones recorded by the work's earlier holder (under its
    fence) keeps that recorded SHA-256; any other is hashed again.
    """

    size: int
    mtime_ns: int
    sha256: str

    def matches(self, identity: FileIdentity) -> bool:
        return self.size == identity.size and self.mtime_ns == identity.mtime_ns


class SourceRejected(NotarydError):
    """The archive is not something notaryd may read: the message says what and how to fix it."""

    def __init__(self, path: Path | str, why: str, *, outside_roots: bool = False,
                 os_error: OSError | None = None) -> None:
        super().__init__(f"{path}: {why}")
        self.path = path
        self.why = why
        self.outside_roots = outside_roots
        self.os_error = os_error  # the open's own error, when that is what refused it


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
    fd, opened = open_regular(path, follow_symlinks=roots is None,
                              advice="give a .zip, .pkg or .dmg")
    try:
        if roots is not None:
            check_within(path, real_path(fd), roots, "the opened file")
            refuse_hard_link(path, opened)
        if expected is not None:
            what = _difference(expected, opened)
            if what:
                raise SourceChangedError(Path(path), what)
        return fd
    except BaseException:
        os.close(fd)
        raise


def allowed_roots() -> tuple[Path, ...] | None:
    """The roots set by ``confine_to`` around this call (resolved), or None when unconfined."""
    return _allowed_roots.get()


def open_regular(
    name: Path | str,
    *,
    dir_fd: int | None = None,
    follow_symlinks: bool = False,
    advice: str = "",
) -> tuple[int, os.stat_result]:
    """Open ``name`` (relative to ``dir_fd`` if given) for reading: (descriptor, its fstat).

    Never blocks (a FIFO opens at once and is then refused) and, unless ``follow_symlinks``,
    refuses a symlink as the last component. Raises ``SourceRejected`` for anything but a
    regular file; ``advice`` is appended to the "not a regular file" line. The caller closes.
    """
    flags = _OPEN_FLAGS | (0 if follow_symlinks else os.O_NOFOLLOW)
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:
        raise SourceRejected(name, _open_error(exc), os_error=exc) from None
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):
            why = f"not a regular file ({file_kind(opened.st_mode)})"
            raise SourceRejected(name, f"{why}; {advice}" if advice else why)
        os.set_blocking(fd, True)  # meaningless for regular files; plain reads from here on
        return fd, opened
    except BaseException:
        os.close(fd)
        raise


def open_folder(name: Path | str, *, dir_fd: int | None = None, follow_symlinks: bool = False) -> int:
    """Open the folder ``name`` (relative to ``dir_fd`` if given); a symlink is refused unless
    ``follow_symlinks``. Raises ``SourceRejected``; the caller closes the descriptor."""
    flags = (os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
             | (0 if follow_symlinks else os.O_NOFOLLOW))
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.ELOOP):  # Linux says ENOTDIR for a link to a folder
            with contextlib.suppress(OSError):
                if stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                    raise SourceRejected(name, "is a symbolic link; notaryd does not follow it "
                                         "(give the real folder)", os_error=exc) from None
            raise SourceRejected(name, "is not a folder", os_error=exc) from None
        raise SourceRejected(name, _open_error(exc), os_error=exc) from None


def identity_change(before: os.stat_result, after: os.stat_result) -> str | None:
    """What differs between two stats of (supposedly) the same file, or None.

    The ctime is part of it: every write, rename or chmod sets it, and no user can set it back,
    so a file rewritten with its size and mtime restored is still told apart.
    """
    if (before.st_dev, before.st_ino) != (after.st_dev, after.st_ino):
        return "it was replaced by another file"
    if before.st_size != after.st_size:
        return f"its size changed ({before.st_size} -> {after.st_size} bytes)"
    if before.st_mtime_ns != after.st_mtime_ns or before.st_ctime_ns != after.st_ctime_ns:
        return "it was modified"
    return None


def refuse_hard_link(path: Path | str, st: os.stat_result) -> None:
    """Inside the allowed roots, a regular file must have one name: a second one (a hard link)
    may be outside the roots, and reading it would read a file the roots keep out."""
    if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
        raise SourceRejected(
            path, f"has {st.st_nlink} hard links; the daemon reads only files with one name "
                  "(another could be outside the allowed roots): give a copy (cp, not ln)")


def display_name(path: Path | str) -> str:
    """``path`` as text that prints anywhere: bytes that are not UTF-8 shown as \\xNN."""
    try:
        return os.fsencode(path).decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that no file name can hold (from JSON, say)
        return os.fspath(path).encode("utf-8", "backslashreplace").decode("utf-8")


def refuse_non_utf8(path: Path | str) -> None:
    """notaryd handles only names that are valid UTF-8 (the zip format, the notary service,
    JSON and SQLite all speak it): anything else is refused here, in one clear line."""
    try:
        os.fsencode(path).decode("utf-8")
    except (UnicodeDecodeError, UnicodeEncodeError):
        raise SourceRejected(display_name(path), "the name is not valid UTF-8; rename it "
                             "(notaryd and the notary service handle only UTF-8 names)") from None


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


def file_kind(mode: int) -> str:
    """What a file that is not a regular one is, in words ("a FIFO", "a socket" ...)."""
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
    path: Path | str, roots: Sequence[Path] | None, expected: FileIdentity | None = None
) -> FileIdentity:
    """Open ``path`` (confined to ``roots`` unless None: then to the roots in effect, if any),
    check it (and ``expected``), close it: its identity."""
    confined = confine_to(roots) if roots is not None else contextlib.nullcontext()
    with confined, opened_source(path, expected) as fd:
        return FileIdentity.of_stat(Path(path), os.fstat(fd))


def check_bundle_folder(path: Path | str, roots: Sequence[Path] | None) -> FileIdentity:
    """A bundle to be zipped is a real folder (not a symlink to one) under ``roots``: its identity.

    The folder is opened (``O_NOFOLLOW | O_DIRECTORY``) and its real path read from the
    descriptor, like ``open_source`` does for a file; the zipping itself never follows links.
    Unconfined (``roots`` None and no ``confine_to`` around), the user's own link is followed.
    """
    roots = allowed_roots() if roots is None else roots
    fd = open_folder(path, follow_symlinks=roots is None)
    try:
        if roots is not None:
            resolved = tuple(Path(os.path.realpath(root)) for root in roots)
            check_within(path, real_path(fd), resolved, "the bundle")
        return FileIdentity.of_stat(Path(path), os.fstat(fd))
    finally:
        os.close(fd)


def check_within(path: Path | str, real: Path, roots: Sequence[Path], what: str) -> None:
    """``real`` (where the opened file really is) must be under one of ``roots`` (resolved)."""
    if not any(real.is_relative_to(root) for root in roots):
        raise SourceRejected(
            path,
            f"{what} is {real}, outside the allowed roots "
            f"({', '.join(str(r) for r in roots) or 'none'})",
            outside_roots=True,
        )
