"""Walking what the user points at: a folder (.app), a zip (and zips/jars/wheels inside it),
a flat .pkg, a single Mach-O. Mach-O files are found by their first bytes, never by name.

Only the first 8 bytes of every file are read, unless they say Mach-O (then headers and the
signature), zip or xar (then the nested archive is opened). A stored zip member is read in
place through the archive's own file handle; a deflated one is streamed, forward only. Nested
archives are opened in place when stored and spooled (in memory up to 64 MiB) when compressed.
"""

from __future__ import annotations

import lzma
import os
import stat
import struct
import zipfile
import zlib
from pathlib import Path
from typing import IO, Protocol

from uploader.preflight import messages as msg
from uploader.preflight.bundles import SealTracker, random_access, seal_files_in_folder
from uploader.preflight.developer_id import TrustAnchors
from uploader.preflight.dmg import inspect_dmg
from uploader.preflight.filenames import normalisation_problem
from uploader.preflight.inspect_macho import inspect_macho
from uploader.preflight.macho import Kind, classify
from uploader.preflight.messages import Severity
from uploader.preflight.report import PreflightIssue
from uploader.preflight.source import (
    BackwardReadError,
    ByteSource,
    ForwardSource,
    RegionSource,
)

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
)

_ZIP_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
_APPLEDOUBLE_DIR = "__MACOSX/"


class Scan:
    """Accumulates issues and counts while containers are walked. One per run; not thread safe."""

    def __init__(self, anchors: TrustAnchors) -> None:
        self.anchors = anchors
        self.issues: list[PreflightIssue] = []
        self.files_scanned = 0
        self.macho_files = 0
        self.slices = 0
        self.seals = SealTracker()

    def add(self, severity: Severity, path: str, message: str, detail: str | None = None) -> None:
        self.issues.append(PreflightIssue(severity, path, message, None, detail))

    def check_name(self, path: str, name: str, *, declared_utf8: bool = True) -> None:
        if problem := normalisation_problem(name, declared_utf8=declared_utf8):
            self.add(Severity.WARNING, path, msg.FILENAME_NORMALISATION, problem)

    def visit(self, path: str, source: ByteSource) -> None:
        """Look at one regular file, wherever it lives, and descend into it if it is a container."""
        self.files_scanned += 1
        kind = classify(source.read_at(0, 8))
        if kind is Kind.MACHO:
            self.macho_files += 1
            with random_access(source) as seekable:
                issues, slices = inspect_macho(path, seekable, self.anchors)
                self.issues.extend(issues)
                self.slices += slices
                self.issues.extend(self.seals.visit_code(path, seekable))
        elif kind is Kind.ZIP:
            with random_access(source) as seekable:
                self.seals.visit_file(path, seekable)
                self._descend(path, seekable, scan_zip)
        elif kind is Kind.XAR:
            from uploader.preflight.pkg import scan_pkg  # pkg imports this module

            with random_access(source) as seekable:
                self.seals.visit_file(path, seekable)
                self._descend(path, seekable, scan_pkg)
        elif _looks_like_dmg(path, source):
            with random_access(source) as seekable:
                self.seals.visit_file(path, seekable)
                self.issues.extend(inspect_dmg(path, seekable, self.anchors))
        else:
            self.seals.visit_file(path, source)

    def _descend(self, path: str, source: ByteSource, scan_container: _ContainerScanner) -> None:
        try:
            with source.spool() as spooled:
                scan_container(self, spooled, path)
        except CONTAINER_ERRORS as exc:
            self.add(
                Severity.WARNING, path, msg.CONTAINER_NOT_INSPECTED, f"{type(exc).__name__}: {exc}"
            )


class _ContainerScanner(Protocol):
    def __call__(self, scan: Scan, fileobj: IO[bytes], display_root: str) -> None: ...


def scan_zip(scan: Scan, fileobj: IO[bytes], display_root: str) -> None:
    with zipfile.ZipFile(fileobj) as archive:
        names = (f"{display_root}/{n}" for n in archive.namelist())
        scan.seals.expect(display_root, names, zip_archive=True)
        # Central-directory order can differ from data order; data order keeps reads forward.
        for info in sorted(archive.infolist(), key=lambda i: i.header_offset):
            name = info.filename
            if info.is_dir() or name.startswith(_APPLEDOUBLE_DIR):
                continue
            if stat.S_ISLNK(info.external_attr >> 16):
                # A symlink's data is its target's path, not code; seals record the target.
                if not info.flag_bits & 0x1:
                    with archive.open(info) as link:
                        target = link.read(4096).decode("utf-8", "replace")
                    scan.seals.visit_link(f"{display_root}/{name}", target)
                continue
            path = f"{display_root}/{name}"
            scan.check_name(path, name, declared_utf8=bool(info.flag_bits & 0x800))
            if info.flag_bits & 0x1:
                scan.add(
                    Severity.WARNING, path, msg.CONTAINER_NOT_INSPECTED, "encrypted zip member"
                )
                continue
            try:
                if info.compress_type == zipfile.ZIP_STORED:
                    start = _stored_data_offset(fileobj, info)
                    scan.visit(path, RegionSource(fileobj, start, info.file_size))
                else:
                    with archive.open(info) as member:
                        scan.visit(path, ForwardSource(member, info.file_size))
            except CONTAINER_ERRORS as exc:
                scan.add(
                    Severity.WARNING,
                    path,
                    msg.CONTAINER_NOT_INSPECTED,
                    f"{type(exc).__name__}: {exc}",
                )
    scan.issues.extend(scan.seals.finish(display_root))


def _stored_data_offset(fileobj: IO[bytes], info: zipfile.ZipInfo) -> int:
    """Where a stored member's bytes start: after its local header, whose extra field may
    differ in length from the central directory's copy."""
    fileobj.seek(info.header_offset)
    header = fileobj.read(_ZIP_LOCAL_HEADER.size)
    fields = _ZIP_LOCAL_HEADER.unpack(header)
    if fields[0] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"bad local header for {info.filename}")
    name_length, extra_length = int(fields[9]), int(fields[10])
    start: int = info.header_offset
    return start + _ZIP_LOCAL_HEADER.size + name_length + extra_length


def scan_directory(scan: Scan, root: Path) -> None:
    root_name = root.resolve().name  # "." or "Game.app/" still show as "Game.app"
    scan.seals.expect(root_name, seal_files_in_folder(root, root_name))
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in (*dirnames, *filenames):
            if (link := Path(dirpath, name)).is_symlink():
                rel = link.relative_to(root).as_posix()
                scan.seals.visit_link(f"{root_name}/{rel}", os.readlink(link))
        for filename in sorted(filenames):
            full = Path(dirpath, filename)
            if full.is_symlink() or not full.is_file():
                continue
            rel = full.relative_to(root).as_posix()
            path = f"{root_name}/{rel}"
            scan.check_name(path, rel)
            with full.open("rb") as handle:
                scan.visit(path, RegionSource(handle, 0, os.fstat(handle.fileno()).st_size))
    scan.issues.extend(scan.seals.finish(root_name))


def _looks_like_dmg(path: str, source: ByteSource) -> bool:
    if path.lower().endswith(".dmg"):
        return True
    # The UDIF trailer is the last 512 bytes; only cheap to read when the bytes are seekable.
    return (
        isinstance(source, RegionSource)
        and source.size >= 512
        and source.read_at(source.size - 512, 4) == b"koly"
    )
