"""Walking what the user points at: a folder (.app), a zip (and zips/jars/wheels inside it),
a flat .pkg, a single Mach-O. Mach-O files are found by their first bytes, never by name.

Only the first 8 bytes of every file are read, unless they say Mach-O (then headers, the
signature and the pages it covers), zip or xar (then the nested archive is opened), or the file
lies in a sealed bundle (then it is hashed for ``bundles.SealTracker``). A stored zip member is read in
place through the archive's own file handle; a deflated one is streamed, forward only. Nested
archives are opened in place when stored, read through zipfile's seekable member stream when
deflated (re-inflating on a backward seek, no copy) and copied to a bounded spool only when they
sit in a forward-only stream (a .pkg payload); so is code, whose signature is read before its
pages (``source.random_access``).

Anything that cannot be read is an error on the member that holds it, never a silent skip, and
no input ends in a traceback: ``Scan.visit`` is the boundary (limits: ``limits.py``).
"""

from __future__ import annotations

import contextlib
import lzma
import os
import stat
import struct
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Protocol
from xml.etree.ElementTree import ParseError

from uploader.bundle_walk import BundleChangedError, BundleTree, Member
from uploader.errors import ConfigError
from uploader.preflight import messages as msg
from uploader.preflight.bundles import SealTracker
from uploader.preflight.developer_id import TrustAnchors
from uploader.preflight.dmg import inspect_dmg
from uploader.preflight.filenames import extraction_problem, normalisation_problem
from uploader.preflight.inspect_macho import inspect_macho
from uploader.preflight.limits import (
    DEFAULT_LIMITS,
    Budget,
    LimitError,
    Limits,
    Metered,
    ScanAborted,
)
from uploader.preflight.macho import Kind, classify
from uploader.preflight.messages import Severity
from uploader.preflight.report import PreflightIssue
from uploader.preflight.source import (
    BackwardReadError,
    ByteSource,
    ForwardSource,
    RegionSource,
    random_access,
)
from uploader.preflight.zipdir import central_directory_entries
from uploader.source_file import SourceRejected, open_regular

# Errors that mean "this nested container is damaged or unreadable", reported, not raised.
CONTAINER_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    NotImplementedError,  # zip compression methods zipfile does not support
    EOFError,
    OSError,
    zlib.error,
    lzma.LZMAError,
    ValueError,
    BackwardReadError,
    struct.error,
    ParseError,  # malformed xar table of contents
    LimitError,
)



class PreflightInputError(ConfigError):
    """PATH cannot be preflighted at all (missing, unreadable, or a damaged top-level archive)."""


_ZIP_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
_APPLEDOUBLE_DIR = "__MACOSX/"
_MAX_LINK_TARGET = 4096  # bytes; PATH_MAX is 1024 on macOS


class Scan:
    """Accumulates issues and counts while containers are walked. One per run; not thread safe."""

    def __init__(
        self,
        anchors: TrustAnchors,
        limits: Limits = DEFAULT_LIMITS,
        *,
        containers: Mapping[Kind, ContainerScanner],
    ) -> None:
        self.anchors = anchors
        self.containers = containers  # how to open each kind of nested archive (runner's table)
        self.limits = limits
        self.budget = Budget(limits)
        self.issues: list[PreflightIssue] = []
        self.omitted: Counter[Severity] = Counter()  # issues past limits.max_issues
        self.files_scanned = 0
        self.macho_files = 0
        self.slices = 0
        self.depth = 0  # archives currently open inside the top-level one
        self.open_zip_entries = 0
        self.seals = SealTracker(limits)

    def add(self, severity: Severity, path: str, message: str, detail: str | None = None) -> None:
        self.extend([PreflightIssue(severity, path, message, None, detail)])

    def extend(self, issues: list[PreflightIssue]) -> None:
        for issue in issues:
            if len(self.issues) < self.limits.max_issues:
                self.issues.append(issue)
            else:
                self.omitted[issue.severity] += 1

    def not_inspected(self, path: str, why: str | BaseException) -> None:
        """``path`` could not be read (fully): an error, so the run cannot pass."""
        if isinstance(why, BaseException) and not isinstance(why, LimitError):
            why = f"{type(why).__name__}: {why}"
        self.add(Severity.ERROR, path, msg.CONTAINER_NOT_INSPECTED, _one_line(str(why)))

    def check_name(self, path: str, name: str, *, declared_utf8: bool = True) -> None:
        if problem := normalisation_problem(name, declared_utf8=declared_utf8):
            self.add(Severity.WARNING, path, msg.FILENAME_NORMALISATION, problem)

    def visit(self, path: str, source: ByteSource) -> None:
        """Look at one regular file, wherever it lives, and descend into it if it is a container."""
        if self.admit(path):
            with self.reading(path):
                self.inspect(path, source)

    def count_member(self) -> None:
        self.files_scanned += 1
        if self.files_scanned > self.limits.max_members:
            raise ScanAborted(f"more than {self.limits.max_members:,} files in one archive")

    def admit(self, path: str, name: str | None = None, *, declared_utf8: bool = True) -> bool:
        """Count a member about to be inspected and check its name. False (and an error) when
        its path is too long to be real: kept in every issue, such paths would cost memory."""
        self.count_member()
        if len(path) > self.limits.max_path:
            shown = f"{path[:200]}…"
            self.not_inspected(
                shown, f"path of {len(path):,} characters (limit {self.limits.max_path:,})"
            )
            return False
        if name is not None:
            self.check_name(path, name, declared_utf8=declared_utf8)
        return True

    @contextmanager
    def reading(self, path: str) -> Iterator[None]:
        """Whatever goes wrong inside becomes an error on ``path``; only ``ScanAborted``
        (a limit on the whole run) goes further."""
        try:
            yield
        except ScanAborted:
            raise
        except CONTAINER_ERRORS as exc:
            self.not_inspected(path, exc)
        except Exception as exc:  # a parser bug must not pass a member it could not read
            self.not_inspected(path, InternalError(f"{type(exc).__name__}: {exc}"))

    @contextmanager
    def seals_of(self, container: str) -> Iterator[None]:
        """Judge the bundles inside ``container`` once it has been read to its end."""
        try:
            yield
        except BaseException:
            self.seals.forget(container)
            raise
        with self.reading(container):
            self.extend(self.seals.finish(container))

    def inspect(self, path: str, source: ByteSource) -> None:
        """``visit`` without the counting and the error boundary, for callers that have both."""
        kind = classify(source.read_at(0, 8))
        if kind is Kind.MACHO:
            self.macho_files += 1
            self._inspect_code(path, source)
        elif (scan_container := self.containers.get(kind)) is not None:
            self._descend(path, source, scan_container)
        elif _looks_like_dmg(path, source):
            if self._too_large_to_copy(source):
                self.add(Severity.WARNING, path, msg.DMG_NOT_INSPECTED, self._copy_limit(source))
                self.seals.visit_unhashed(path, self._copy_limit(source))
                return
            with random_access(source, self.budget) as seekable:
                self.seals.visit_file(path, seekable)
                self.extend(inspect_dmg(path, seekable, self.anchors))
        else:
            self.seals.visit_file(path, source)

    def _inspect_code(self, path: str, source: ByteSource) -> None:
        """Signing facts, then the pages against the signature (which needs random access)."""
        if self._too_large_to_copy(source):
            # Too large to copy out of a compressed payload within the temp-space bound:
            # the signing facts still come from forward reads, the pages go unchecked.
            issues, slices = inspect_macho(path, source, self.anchors)
            self.extend(issues)
            self.slices += slices
            why = self._copy_limit(source)
            self.add(Severity.WARNING, path, msg.PAGES_NOT_COMPARED, why)
            self.seals.visit_unhashed(path, why)
            return
        with random_access(source, self.budget) as seekable:
            issues, slices = inspect_macho(path, seekable, self.anchors)
            self.extend(issues)
            self.slices += slices
            self.extend(self.seals.visit_code(path, seekable))

    def _too_large_to_copy(self, source: ByteSource) -> bool:
        """Whether random access to ``source`` needs a copy larger than the spool allows."""
        return (
            isinstance(source, ForwardSource)
            and source.copies_to_seek()
            and not self.budget.can_spool(source.size)
        )

    def _copy_limit(self, source: ByteSource) -> str:
        return (
            f"{source.size:,} bytes in a compressed stream, more than the "
            f"{self.limits.max_spool_bytes:,} bytes preflight may copy to read it twice"
        )

    def _descend(self, path: str, source: ByteSource, scan_container: ContainerScanner) -> None:
        if self.depth >= self.limits.max_depth:
            raise LimitError(
                f"archives nested more than {self.limits.max_depth} deep; nothing below was checked"
            )
        self.depth += 1
        try:
            with random_access(source, self.budget) as seekable:
                self.seals.visit_file(path, seekable)
                with seekable.open_seekable(self.budget) as fileobj:
                    scan_container(self, fileobj, path)
        finally:
            self.depth -= 1


class InternalError(Exception):
    """An input made a parser fail in a way it does not anticipate (a preflight bug)."""

    def __str__(self) -> str:
        return f"internal error, please report it: {super().__str__()}"


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ContainerScanner(Protocol):
    def __call__(self, scan: Scan, fileobj: IO[bytes], display_root: str) -> None: ...


def scan_zip(scan: Scan, fileobj: IO[bytes], display_root: str) -> None:
    limits = scan.limits
    entries = central_directory_entries(
        fileobj, limits.max_open_zip_entries, limits.max_zip_directory_bytes
    )
    if scan.open_zip_entries + entries > limits.max_open_zip_entries:
        raise LimitError(
            f"zip holds {entries:,}+ entries; preflight keeps at most "
            f"{limits.max_open_zip_entries:,} open at once"
        )
    scan.open_zip_entries += entries
    try:
        with scan.seals_of(display_root), zipfile.ZipFile(fileobj) as archive:
            names = (f"{display_root}/{n}" for n in archive.namelist())
            scan.seals.expect(display_root, names, zip_archive=True)
            # Central-directory order can differ from data order; data order keeps reads forward.
            for info in sorted(archive.infolist(), key=lambda i: i.header_offset):
                _visit_zip_member(scan, archive, fileobj, info, display_root)
    finally:
        scan.open_zip_entries -= entries


def _visit_zip_member(
    scan: Scan, archive: zipfile.ZipFile, fileobj: IO[bytes], info: zipfile.ZipInfo, root: str
) -> None:
    name = info.filename
    if problem := extraction_problem(name):
        scan.count_member()
        scan.add(Severity.ERROR, f"{root}/{name}", msg.UNEXTRACTABLE_NAME,
                 f"member name {name!r}: {problem}")
        return
    # Not info.is_dir(): it fails on an empty name.
    if name.endswith("/") or name.startswith(_APPLEDOUBLE_DIR):
        return
    if stat.S_ISLNK(info.external_attr >> 16):
        # A symlink's data is its target's path, not code; seals record the target.
        if not info.flag_bits & 0x1:
            with scan.reading(f"{root}/{name}"), archive.open(info) as link:
                target = link.read(_MAX_LINK_TARGET).decode("utf-8", "replace")
                scan.seals.visit_link(f"{root}/{name}", target)
        return
    path = f"{root}/{name}"
    if not scan.admit(path, name, declared_utf8=bool(info.flag_bits & 0x800)):
        return
    if info.flag_bits & 0x1:
        scan.not_inspected(path, "the member is encrypted")
        return
    with scan.reading(path):
        if info.compress_type == zipfile.ZIP_STORED:
            start = _stored_data_offset(fileobj, info)
            scan.inspect(path, RegionSource(fileobj, start, info.file_size))
            return
        with archive.open(info) as member:
            stream = Metered(member, scan.budget, f"zip member {name!r}", info.file_size)
            scan.inspect(path, ForwardSource(stream, info.file_size))


def _stored_data_offset(fileobj: IO[bytes], info: zipfile.ZipInfo) -> int:
    """Where a stored member's bytes start: after its local header, whose extra field may
    differ in length from the central directory's copy."""
    fileobj.seek(info.header_offset)
    header = fileobj.read(_ZIP_LOCAL_HEADER.size)
    if len(header) < _ZIP_LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"no local header at offset {info.header_offset}")
    fields = _ZIP_LOCAL_HEADER.unpack(header)
    name_length, extra_length = int(fields[9]), int(fields[10])
    start: int = info.header_offset
    return start + _ZIP_LOCAL_HEADER.size + name_length + extra_length


def scan_directory(scan: Scan, root: Path) -> None:
    """Check every regular file in the folder ``root``, read through ``BundleTree``: relative to
    folder descriptors, no link followed, each file the one the walk listed (so a folder or a
    file swapped meanwhile is never read through); what cannot be read is reported."""
    root_name = root.resolve().name  # "." or "Game.app/" still show as "Game.app"
    try:
        tree = BundleTree(root, top_name=root_name)
    except SourceRejected as refused:
        raise PreflightInputError(str(refused)) from None
    with tree:
        members = tree.walk(report=scan.not_inspected, max_depth=scan.limits.max_folder_depth)
        scan.seals.expect(root_name, [m.relative for m in members if not m.is_folder
                                      and m.parts[-2:] == ("_CodeSignature", "CodeResources")])
        for member in members:
            if member.is_link:
                with contextlib.suppress(BundleChangedError):  # gone since listed: nothing to seal
                    scan.seals.visit_link(member.relative, tree.read_link(member))
            elif not member.is_folder:
                _scan_member(scan, tree, member)
    scan.extend(scan.seals.finish(root_name))


def _scan_member(scan: Scan, tree: BundleTree, member: Member) -> None:
    if not scan.admit(member.relative, "/".join(member.parts)):
        return
    with scan.reading(member.relative):
        try:
            with tree.opened_file(member) as fd, open(fd, "rb", closefd=False) as handle:
                scan.budget.allow_disk_bytes(member.st.st_size)
                scan.inspect(member.relative, RegionSource(handle, 0, member.st.st_size))
        except BundleChangedError as changed:
            scan.not_inspected(member.relative, f"changed while it was checked ({changed.what})")


def open_regular_file(path: Path, *, follow_symlinks: bool) -> IO[bytes] | None:
    """``path`` open for reading when it is a regular file, else None (``source_file``'s
    ``open_regular``: never blocks, so a FIFO swapped in after a listing cannot hang the open).
    Raises OSError when it cannot be opened at all, as ``open`` does."""
    try:
        fd, _ = open_regular(path, follow_symlinks=follow_symlinks)
    except SourceRejected as refused:
        if refused.os_error is not None:
            raise refused.os_error from None
        return None  # opened, and not a regular file
    return os.fdopen(fd, "rb")


def _looks_like_dmg(path: str, source: ByteSource) -> bool:
    if path.lower().endswith(".dmg"):
        return True
    # The UDIF trailer is the last 512 bytes; only cheap to read when the bytes are seekable.
    return (
        isinstance(source, RegionSource)
        and source.size >= 512
        and source.read_at(source.size - 512, 4) == b"koly"
    )
