"""Every file stapling reads or writes, opened the way ``uploader.source_file`` opens an archive.

Reading: never blocking (a FIFO, or a symlink to one, as ``Info.plist`` opens at once and is
refused), regular files only, and inside a bundle relative to folder descriptors, without
following any link: ``Contents/Info.plist``, the main executable and ``Contents/CodeResources``
must be real files inside the bundle. The ``.pkg``/``.dmg`` itself: the CLI staples the file a
symlink points to (its user named it); the daemon (``confine_to``) refuses a link, as it does for
the archive, and checks the allowed roots.

Writing (``replace``): the new version is written to ``.notaryd-staple.<name>.<random>.tmp``
beside the file, locked (``flock``) while it is written, given the original's owner, group, mode
and extended attributes, and renamed over it; a file with several hard links is refused (the
rename would split them), as is one whose owner this user cannot give the copy. A run killed
mid-copy leaves its temporary file; the next run in that folder removes every such file that no
live run holds locked. Blocking; the long copy stops between reads when ``stop`` is set.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from uploader import source_file as safe
from uploader.errors import ConfigError
from uploader.source_file import SourceRejected, display_name

TEMP_PREFIX = ".notaryd-staple."
TEMP_SUFFIX = ".tmp"
# A temporary file is locked a few microseconds after it is created: one younger than this is
# left alone even when unlocked.
STALE_AFTER_SECONDS = 60.0
_XATTR_SKIPPED = {errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM, errno.EACCES}


class StapleInputError(ConfigError):
    """The artifact cannot be stapled (or checked) as it is; the message says why and what to do."""

    def __init__(self, message: str, why: str = "") -> None:
        super().__init__(message)
        self.why = why or message


class StaplingStopped(Exception):
    """The caller was cancelled: the copy stopped between two reads."""


def _refused(shown: str, error: SourceRejected, fix: str) -> StapleInputError:
    return StapleInputError(f"{shown}: {error.why}; {fix}", error.why)


def _named(f: IO[bytes], path: Path) -> IO[bytes]:
    """Messages about ``f`` (``read_exact``'s, say) name the file, not its descriptor number."""
    raw = getattr(f, "raw", None)
    if raw is not None:
        raw.name = str(path)
    return f


def _open_top(path: Path, *, folder: bool) -> int:
    """The artifact itself: a link followed in the CLI, refused in the daemon (roots checked)."""
    roots = safe.allowed_roots()
    try:
        if folder:
            fd = safe.open_folder(path, follow_symlinks=roots is None)
        else:
            fd, _ = safe.open_regular(path, follow_symlinks=roots is None)
    except SourceRejected as error:
        raise _refused(display_name(path), error, "give a .app bundle, a .dmg or a flat .pkg") from None
    try:
        if roots is not None:
            safe.check_within(path, safe.real_path(fd), roots, "the artifact")
    except SourceRejected as error:
        os.close(fd)
        raise StapleInputError(str(error)) from None
    return fd


@contextlib.contextmanager
def opened_artifact(path: Path) -> Iterator[IO[bytes]]:
    """A .pkg or .dmg open for reading (see the module doc for links)."""
    with _named(os.fdopen(_open_top(path, folder=False), "rb"), path) as f:
        yield f


@contextlib.contextmanager
def bundle_folder(bundle: Path, *parts: str) -> Iterator[int]:
    """The folder ``bundle/parts…`` opened through the bundle's descriptor, no link followed."""
    fd = _open_top(bundle, folder=True)
    try:
        for depth, name in enumerate(parts, start=1):
            try:
                sub = safe.open_folder(name, dir_fd=fd)
            except SourceRejected as error:
                shown = display_name(bundle / "/".join(parts[:depth]))
                raise _refused(shown, error, "a bundle's folders must be real folders inside it") from None
            os.close(fd)
            fd = sub
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def opened_in_bundle(bundle: Path, *parts: str) -> Iterator[IO[bytes]]:
    """The regular file ``bundle/parts…`` open for reading; never a link, never blocking."""
    with bundle_folder(bundle, *parts[:-1]) as folder:
        try:
            fd, _ = safe.open_regular(parts[-1], dir_fd=folder)
        except SourceRejected as error:
            raise _refused(display_name(bundle.joinpath(*parts)), error,
                           "it must be a regular file inside the bundle") from None
    with _named(os.fdopen(fd, "rb"), bundle.joinpath(*parts)) as f:
        yield f


def replace_artifact(f: IO[bytes], path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Replace the .pkg/.dmg open as ``f`` (the file a link points to, when ``path`` is one)."""
    real = safe.real_path(f.fileno())
    folder = safe.open_folder(real.parent, follow_symlinks=True)
    try:
        roots = safe.allowed_roots()
        if roots is not None:
            safe.check_within(real.parent, safe.real_path(folder), roots, "its folder")
        replace(folder, real.name, real, write, original=f)
    except SourceRejected as error:
        raise StapleInputError(str(error)) from None
    finally:
        os.close(folder)


def exists_in(folder: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def replace(
    folder: int,
    name: str,
    shown: Path,
    write: Callable[[IO[bytes]], object],
    *,
    original: IO[bytes] | None = None,
    owner_of_new: os.stat_result | None = None,
) -> None:
    """Write a new ``name`` in ``folder`` through a locked temporary file, then rename it over.

    ``original`` (open for reading) is the file being replaced: its owner, group, mode and
    extended attributes go to the new one, and it must not have changed meanwhile. A new file
    (no original) gets mode 0644 and the owner of ``owner_of_new`` (its folder, say).
    """
    remove_stale_temporaries(folder, name)
    before = os.fstat(original.fileno()) if original is not None else None
    if before is not None:
        if before.st_nlink > 1:
            raise StapleInputError(f"{display_name(shown)}: has {before.st_nlink} hard links, which "
                                   "stapling would split (it writes a new file); staple a copy "
                                   "with one name (cp it, then move the copy over it)")
        _still_named(folder, name, before, shown)
    temporary = f"{TEMP_PREFIX}{name}.{secrets.token_hex(6)}{TEMP_SUFFIX}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600, dir_fd=folder)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a later run's clean-up leaves a live copy alone
        with os.fdopen(fd, "wb", closefd=False) as out:
            write(out)
            out.flush()
        _copy_metadata(fd, original, before or owner_of_new, shown)
        os.fsync(fd)
        if original is not None and before is not None:
            what = safe.identity_change(before, os.fstat(original.fileno()))
            if what:
                raise StapleInputError(f"{display_name(shown)}: changed while it was being stapled "
                                       f"({what}); run notaryd staple again")
            _still_named(folder, name, before, shown)
        os.replace(temporary, name, src_dir_fd=folder, dst_dir_fd=folder)
        os.fsync(folder)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=folder)
        raise
    finally:
        os.close(fd)


def _still_named(folder: int, name: str, original: os.stat_result, shown: Path) -> None:
    """``name`` in ``folder`` is still the file that was read: the rename replaces that one."""
    try:
        now = os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        now = None
    if now is None or (now.st_dev, now.st_ino) != (original.st_dev, original.st_ino):
        raise StapleInputError(f"{display_name(shown)}: was replaced while it was being stapled; "
                               "run notaryd staple again")


def _copy_metadata(fd: int, original: IO[bytes] | None, model: os.stat_result | None,
                   shown: Path) -> None:
    if model is not None and (model.st_uid, model.st_gid) != (os.getuid(), os.getgid()):
        try:
            os.fchown(fd, model.st_uid, model.st_gid)
        except PermissionError:
            if original is not None:  # (a new file only borrows its folder's owner)
                raise StapleInputError(
                    f"{display_name(shown)}: belongs to user {model.st_uid} (group "
                    f"{model.st_gid}); stapling would change its owner: run notaryd staple as "
                    "that user") from None
    os.fchmod(fd, stat.S_IMODE(model.st_mode) if original is not None and model else 0o644)
    if original is not None and hasattr(os, "listxattr"):  # Linux; macOS' os lacks xattr calls
        for attribute in os.listxattr(original.fileno()):
            try:
                os.setxattr(fd, attribute, os.getxattr(original.fileno(), attribute))
            except OSError as error:
                if error.errno not in _XATTR_SKIPPED:  # the file system or the user cannot
                    raise


def remove_stale_temporaries(folder: int, for_name: str = "", *, now: float | None = None) -> list[str]:
    """Remove the temporary files that killed runs left in ``folder``: the names removed.

    Also those of notaryd 0.x (``.<for_name>.<8 random characters>.staple``, not locked: only
    their age tells them from a live one).
    """
    now = time.time() if now is None else now
    removed = []
    legacy = re.compile(rf"\.{re.escape(for_name)}\.[a-z0-9_]{{8}}\.staple") if for_name else None
    with os.scandir(folder) as listing:
        names = [e.name for e in listing
                 if (e.name.startswith(TEMP_PREFIX) and e.name.endswith(TEMP_SUFFIX))
                 or (legacy is not None and legacy.fullmatch(e.name))]
    for name in names:
        try:
            fd, st = safe.open_regular(name, dir_fd=folder)
        except SourceRejected:
            continue  # not one of ours (a link, a FIFO): leave it
        try:
            if now - st.st_mtime < STALE_AFTER_SECONDS:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live run is writing it
            os.unlink(name, dir_fd=folder)
            removed.append(name)
        finally:
            os.close(fd)
    return removed


def copy_range(source: IO[bytes], target: IO[bytes], length: int, shown: Path,
               stop: threading.Event | None = None) -> None:
    """The first ``length`` bytes of ``source`` to ``target``; ``stop`` ends it between reads."""
    source.seek(0)
    left = length
    while left:
        if stop is not None and stop.is_set():
            raise StaplingStopped(f"{shown}: stapling stopped (cancelled)")
        chunk = source.read(min(left, 8 << 20))
        if not chunk:
            raise StapleInputError(f"{display_name(shown)}: changed while stapling")
        target.write(chunk)
        left -= len(chunk)
