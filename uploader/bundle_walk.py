"""Walking a bundle and reading its members without following anything a local user can swap.

A bundle is a tree of names, and any name can be swapped while notaryd zips it: a file for a
symlink to a secret, for a FIFO (a blocking open hangs for ever), for a link to ``/dev/zero``;
a folder for a symlink to another folder. So nothing is ever opened by its path:

* the bundle folder is opened once (``open_folder``; in the daemon without following a link and
  checked to be inside the allowed roots), and every folder below it is opened *relative to its
  parent's descriptor*, never following a link, and listed with ``os.scandir`` on that
  descriptor. A folder swapped for a symlink fails the open, so nothing below a link is ever
  listed or stored;
* members are regular files (opened the same way, non-blocking, checked with ``fstat``), folders
  and symlinks (their text read with ``readlink`` relative to the parent); anything else is
  refused, naming it;
* each member's ``fstat`` (device, inode, size, mtime, ctime) is compared with the walk's before
  and after it is read, and exactly the walk's size is read: a member that changed fails the run,
  naming it (a rewrite with the mtime put back still changes the ctime);
* in the daemon (``confine_to``) a regular file with a second name (hard link) is refused like a
  file outside the allowed roots; names that are not UTF-8 are refused everywhere.

``before_open(relative name)`` is called just before each member is opened: the seam the tests
use to swap a member between the walk and the read, deterministically. Blocking throughout.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from uploader.buffers import ReadBuffer
from uploader.errors import ConfigError
from uploader.source_file import (
    SourceRejected,
    allowed_roots,
    check_within,
    display_name,
    identity_change,
    open_folder,
    open_regular,
    real_path,
    refuse_hard_link,
    refuse_non_utf8,
)

MAX_FOLDER_DEPTH = 256  # one open descriptor per level while walking

BeforeOpen = Callable[[str], None]
Report = Callable[[str, str], None]


class BundleChangedError(ConfigError):
    def __init__(self, bundle: Path, member: str | None = None, what: str = "") -> None:
        where = f" ({display_name(member)}: {what})" if member else ""
        super().__init__(f"{display_name(bundle)}: changed while notaryd was zipping it{where}; "
                         "nothing was submitted. Run again once the build is final.")
        self.member = member
        self.what = what or "a member was added or removed"


class PackagingStopped(Exception):
    """The caller was cancelled: reading stopped between two reads."""


@dataclass(frozen=True)
class Member:
    relative: str  # as stored: "Game.app/Contents/MacOS/Game"; folders end with "/"
    parts: tuple[str, ...]  # the names below the bundle folder; () for the folder itself
    st: os.stat_result  # at walk time, links not followed

    @property
    def is_folder(self) -> bool:
        return stat.S_ISDIR(self.st.st_mode)

    @property
    def is_link(self) -> bool:
        return stat.S_ISLNK(self.st.st_mode)


class BundleTree:
    """One bundle folder, opened once; walked and read relative to that descriptor."""

    def __init__(self, bundle: Path, *, before_open: BeforeOpen | None = None,
                 top_name: str | None = None) -> None:
        roots = allowed_roots()
        refuse_non_utf8(bundle)
        self.bundle = bundle
        self._top_name = top_name or bundle.name  # the first part of every relative name
        self._report: Report | None = None
        self._max_depth = MAX_FOLDER_DEPTH
        self._before_open = before_open
        self._confined = roots is not None
        # The CLI's own user may name their bundle through a link; the daemon resolved it at POST.
        self._fd = open_folder(bundle, follow_symlinks=roots is None)
        self._parent: tuple[tuple[str, ...], int] | None = None
        try:
            if roots is not None:
                check_within(bundle, real_path(self._fd), roots, "the bundle")
            self._top = os.fstat(self._fd)
        except BaseException:
            os.close(self._fd)
            raise
        self._folders: dict[tuple[str, ...], os.stat_result] = {(): self._top}

    def close(self) -> None:
        self._forget_parent()
        os.close(self._fd)

    def __enter__(self) -> BundleTree:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- walking ---------------------------------------------------------------------------

    def walk(self, *, report: Report | None = None, max_depth: int = MAX_FOLDER_DEPTH) -> list[Member]:
        """Every member, the bundle folder first; in a folder its files and links (sorted),
        then its folders (sorted), each followed by what it holds.

        Anything the walk cannot take (an unreadable folder, a special file, a hard link in the
        daemon, a name that is not UTF-8, folders nested deeper than ``max_depth``, a folder
        swapped meanwhile) fails it, naming the member; with ``report(relative name, why)``
        (preflight, which checks what it can) such members are reported and left out instead,
        special files silently and names taken as they are.
        """
        self._report, self._max_depth = report, max_depth
        members = [Member(self._top_name + "/", (), self._top)]
        self._folders = {(): self._top}
        self._walk(self._fd, (), members)
        return members

    def _walk(self, fd: int, parts: tuple[str, ...], out: list[Member]) -> None:
        try:
            with os.scandir(fd) as listing:
                names = sorted((entry.name, entry.stat(follow_symlinks=False)) for entry in listing)
        except OSError as error:
            why = f"cannot read the folder ({error.strerror})"
            if self._report is not None:
                self._report(self._relative(parts), why)
                return
            raise ConfigError(f"{self._shown(parts)}: {why}; fix its permissions and try again") from None
        folders = []
        for name, st in names:
            child = (*parts, name)
            if self._report is None:
                refuse_non_utf8(self._shown(child))
            if stat.S_ISDIR(st.st_mode):
                folders.append((child, st))
            elif stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                if self._confined and not self._admitted(child, refuse_hard_link, st):
                    continue
                out.append(Member(self._relative(child), child, st))
            elif self._report is None:
                raise ConfigError(f"{self._shown(child)}: a bundle may hold only files, folders "
                                  "and symlinks; remove this special file (socket, fifo or device)")
        for child, st in folders:
            if len(child) > self._max_depth:
                why = f"folders nested more than {self._max_depth} deep"
                if self._report is None:
                    raise ConfigError(f"{self._shown(child)}: {why}; flatten the bundle")
                self._report(self._relative(child), f"{why}; nothing below was checked")
                continue
            out.append(Member(self._relative(child) + "/", child, st))
            self._folders[child] = st
            try:
                sub = self._open_folder(fd, child)
            except (BundleChangedError, OSError) as error:
                if self._report is None:
                    raise
                why = error.what if isinstance(error, BundleChangedError) else str(error.strerror)
                self._report(self._relative(child), why)
                continue
            try:
                self._walk(sub, child, out)
            finally:
                os.close(sub)

    def _admitted(self, child: tuple[str, ...], check: Callable[[str, os.stat_result], None],
                 st: os.stat_result) -> bool:
        """True when ``check`` passes; a refusal raises, or with ``report`` is reported (False)."""
        try:
            check(self._shown(child), st)
        except SourceRejected as error:
            if self._report is None:
                raise
            self._report(self._relative(child), error.why)
            return False
        return True

    def _open_folder(self, parent_fd: int, parts: tuple[str, ...]) -> int:
        relative = self._relative(parts) + "/"
        if self._before_open is not None:
            self._before_open(relative)
        try:
            fd = open_folder(parts[-1], dir_fd=parent_fd)
        except SourceRejected as error:
            raise self._refusal(parts, relative, error) from None
        walked = self._folders.get(parts)
        opened = os.fstat(fd)
        if walked is not None and (walked.st_dev, walked.st_ino) != (opened.st_dev, opened.st_ino):
            os.close(fd)
            raise BundleChangedError(self.bundle, relative, "it was replaced by another folder")
        return fd

    # -- reading ---------------------------------------------------------------------------

    @contextmanager
    def opened_file(self, member: Member) -> Iterator[int]:
        """The member's descriptor, checked to be the file the walk saw; checked again after
        the body read it (an exception in the body skips that check)."""
        parent = self._parent_fd(member.parts[:-1])
        if self._before_open is not None:
            self._before_open(member.relative)
        try:
            fd, opened = open_regular(member.parts[-1], dir_fd=parent)
        except SourceRejected as error:
            raise self._refusal(member.parts, member.relative, error) from None
        try:
            self._same(member, opened)
            yield fd
            self._same(member, os.fstat(fd))
        finally:
            os.close(fd)

    def read_link(self, member: Member) -> str:
        """The text of a symlink member, checked to be the link the walk saw."""
        parent = self._parent_fd(member.parts[:-1])
        if self._before_open is not None:
            self._before_open(member.relative)
        try:
            text = os.readlink(member.parts[-1], dir_fd=parent)
            self._same(member, os.stat(member.parts[-1], dir_fd=parent, follow_symlinks=False))
        except OSError as error:
            raise BundleChangedError(self.bundle, member.relative, error.strerror or str(error)) from None
        return text

    def copy(self, fd: int, member: Member, write: Callable[[memoryview], object],
             buffer: ReadBuffer, *, stop: threading.Event | None = None,
             on_read: Callable[[int], None] | None = None) -> None:
        """Write exactly the walk's size of the member's bytes: a file that grows is not read
        past it (and fails the check after), one that shrinks fails here."""
        view = memoryview(buffer)
        left = member.st.st_size
        with open(fd, "rb", buffering=0, closefd=False) as source:
            while left:
                if stop is not None and stop.is_set():
                    raise PackagingStopped(f"{self.bundle}: packaging stopped (cancelled)")
                n = source.readinto(view[: min(left, len(view))])
                if not n:
                    raise BundleChangedError(self.bundle, member.relative, "it became shorter")
                write(view[:n])
                left -= n
                if on_read is not None:
                    on_read(n)

    def _refusal(self, parts: tuple[str, ...], relative: str, error: SourceRejected) -> Exception:
        """Why a member the walk listed cannot be opened now: unreadable (an OSError naming it,
        told as such) or, for anything else, changed since it was listed."""
        cause = error.os_error
        if cause is not None and cause.errno in (errno.EACCES, errno.EPERM):
            return OSError(cause.errno, cause.strerror, self._shown(parts))
        return BundleChangedError(self.bundle, relative, error.why)

    def _same(self, member: Member, now: os.stat_result) -> None:
        what = identity_change(member.st, now)
        if what:
            raise BundleChangedError(self.bundle, member.relative, what)

    def _parent_fd(self, parts: tuple[str, ...]) -> int:
        """The folder ``parts`` opened from the bundle's descriptor, component by component,
        each the folder the walk saw; the last one is kept for the members that follow."""
        if not parts:
            return self._fd
        if self._parent is not None and self._parent[0] == parts:
            return self._parent[1]
        self._forget_parent()
        fd = self._fd
        for depth in range(1, len(parts) + 1):
            sub = self._open_folder(fd, parts[:depth])
            if fd != self._fd:
                os.close(fd)
            fd = sub
        self._parent = (parts, fd)
        return fd

    def _forget_parent(self) -> None:
        if self._parent is not None:
            os.close(self._parent[1])
            self._parent = None

    def _relative(self, parts: tuple[str, ...]) -> str:
        return "/".join((self._top_name, *parts))

    def _shown(self, parts: tuple[str, ...]) -> str:
        return str(self.bundle.joinpath(*parts))
