"""The walkers for what the user points at, one per artifact kind (``uploader.artifact.KINDS``'s
``preflight`` column), plus ``walk_path`` for ``notaryd preflight`` of anything else.

A walker is ``(scan, path) -> None``: ``walk_folder`` reads a bundle through ``BundleTree``;
``walk_zip``, ``walk_pkg`` and ``walk_dmg`` open the file (never blocking, regular files only)
and hand it to their container's scanner. The top-level archive is walked directly, so its
damage is fatal (``PreflightInputError``), not a finding.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from uploader.preflight.limits import LimitError
from uploader.preflight.pkg import scan_pkg
from uploader.preflight.source import RegionSource
from uploader.preflight.walk import (
    CONTAINER_ERRORS,
    PreflightInputError,
    Scan,
    open_regular_file,
    scan_directory,
    scan_zip,
)

Walker = Callable[[Scan, Path], None]
_FileScanner = Callable[[Scan, IO[bytes], str], None]

__all__ = ["Walker", "walk_dmg", "walk_folder", "walk_path", "walk_pkg", "walk_zip"]


def walk_folder(scan: Scan, path: Path) -> None:
    scan_directory(scan, path)


def walk_zip(scan: Scan, path: Path) -> None:
    _walk_file(scan, path, scan_zip)


def walk_pkg(scan: Scan, path: Path) -> None:
    _walk_file(scan, path, scan_pkg)


def walk_dmg(scan: Scan, path: Path) -> None:
    _walk_file(scan, path, _visit)


def walk_path(scan: Scan, path: Path) -> None:
    """Any folder, or a file by what its first bytes say (zip, xar, Mach-O, disk image)."""
    if path.is_dir():
        scan_directory(scan, path)
    elif path.is_file():
        _walk_file(scan, path, _sniffed)
    else:
        raise PreflightInputError(f"{path}: no such file or folder; give a .zip, .app, .pkg or Mach-O")


def _visit(scan: Scan, handle: IO[bytes], name: str) -> None:
    scan.visit(name, RegionSource(handle, 0, os.fstat(handle.fileno()).st_size))


def _sniffed(scan: Scan, handle: IO[bytes], name: str) -> None:
    head = RegionSource(handle, 0, os.fstat(handle.fileno()).st_size).read_at(0, 8)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        scan_zip(scan, handle, name)
    elif head[:4] == b"xar!":
        scan_pkg(scan, handle, name)
    else:
        _visit(scan, handle, name)


def _walk_file(scan: Scan, path: Path, scanner: _FileScanner) -> None:
    try:
        opened = open_regular_file(path, follow_symlinks=True)
        if opened is None:
            raise PreflightInputError(f"{path}: not a regular file; give a .zip, .pkg or Mach-O")
        with opened as handle:
            scan.budget.allow_disk_bytes(os.fstat(handle.fileno()).st_size)
            scanner(scan, handle, path.name)
    except zipfile.BadZipFile as exc:
        raise PreflightInputError(
            f"{path}: not a readable zip archive ({exc}); re-create it with "
            "`ditto -c -k --keepParent`"
        ) from exc
    except PermissionError as exc:
        raise PreflightInputError(f"{path}: cannot be read ({exc.strerror}); check permissions") from exc
    except LimitError as exc:
        raise PreflightInputError(f"{path}: not checked: {exc}") from exc
    except CONTAINER_ERRORS as exc:
        raise PreflightInputError(
            f"{path}: cannot be read as an archive ({type(exc).__name__}: {exc})"
        ) from exc
