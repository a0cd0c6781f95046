"""``run_preflight(path)``: pick the walker for what ``path`` is and assemble the report."""

from __future__ import annotations

import os
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509

from uploader.preflight import messages as msg
from uploader.preflight.apple_roots import apple_roots
from uploader.preflight.limits import DEFAULT_LIMITS, LimitError, Limits, ScanAborted
from uploader.preflight.macho import Kind
from uploader.preflight.messages import Severity
from uploader.preflight.pkg import scan_pkg
from uploader.preflight.report import PreflightIssue, PreflightReport
from uploader.preflight.source import RegionSource
from uploader.preflight.walk import (
    CONTAINER_ERRORS,
    ContainerScanner,
    PreflightInputError,
    Scan,
    open_regular_file,
    scan_directory,
    scan_zip,
)

# The archives preflight opens, by the kind their first bytes say; ``Scan`` descends through it.
CONTAINER_SCANNERS: dict[Kind, ContainerScanner] = {Kind.ZIP: scan_zip, Kind.XAR: scan_pkg}


def run_preflight(
    path: Path,
    *,
    trust_anchors: Sequence[x509.Certificate] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> PreflightReport:
    """Check ``path`` (folder, .zip, .pkg, Mach-O; .dmg is reported as not inspected).

    ``trust_anchors`` replaces Apple Root CA as the root Developer ID chains must reach (tests
    use it with their own generated CA); ``limits`` bounds memory, time and temp space.
    Blocking: call it through ``asyncio.to_thread`` from async code. Raises
    ``PreflightInputError`` when ``path`` does not exist or its top-level archive is unreadable;
    anything unreadable inside it is an error in the report.
    """
    path = Path(path)
    started = time.perf_counter()
    anchors = apple_roots() if trust_anchors is None else tuple(trust_anchors)
    scan = Scan(anchors, limits, containers=CONTAINER_SCANNERS)
    try:
        if path.is_dir():
            scan_directory(scan, path)
        elif path.is_file():
            _scan_file(scan, path)
        else:
            raise PreflightInputError(
                f"{path}: no such file or folder; give a .zip, .app, .pkg or Mach-O"
            )
    except ScanAborted as exc:
        scan.issues.append(
            PreflightIssue(Severity.ERROR, path.name, msg.SCAN_STOPPED, detail=str(exc))
        )
    except PreflightInputError:
        raise
    except OSError as exc:  # the path itself: too long, a symlink loop, a vanished folder
        raise PreflightInputError(
            f"{path}: cannot be read ({exc.strerror or exc}); check the path"
        ) from exc
    except Exception as exc:  # no input may end in a traceback, here or in a notarize job
        raise PreflightInputError(
            f"{path}: preflight failed (internal error, please report it: "
            f"{type(exc).__name__}: {exc})"
        ) from exc
    if scan.omitted:
        errors, warnings = scan.omitted[Severity.ERROR], scan.omitted[Severity.WARNING]
        scan.issues.append(
            PreflightIssue(
                Severity.ERROR if errors else Severity.WARNING,
                path.name,
                msg.ISSUES_OMITTED,
                detail=f"{errors} more error(s) and {warnings} more warning(s) are not listed",
            )
        )
    if scan.macho_files == 0 and not any(
        i.message in (msg.DMG_NOT_INSPECTED, msg.CONTAINER_NOT_INSPECTED, msg.SCAN_STOPPED)
        for i in scan.issues
    ):
        scan.add(Severity.ERROR, path.name, msg.NO_CODE_FOUND)  # nothing to ticket
    return PreflightReport(
        archive_filename=path.name,
        issues=tuple(scan.issues),
        files_scanned=scan.files_scanned,
        macho_files=scan.macho_files,
        architecture_slices=scan.slices,
        elapsed_seconds=time.perf_counter() - started,
    )


def _scan_file(scan: Scan, path: Path) -> None:
    try:
        opened = open_regular_file(path, follow_symlinks=True)
        if opened is None:
            raise PreflightInputError(f"{path}: not a regular file; give a .zip, .pkg or Mach-O")
        with opened as handle:
            size = os.fstat(handle.fileno()).st_size
            scan.budget.allow_disk_bytes(size)
            # The top-level archive is walked directly, so its damage is fatal, not a warning.
            source = RegionSource(handle, 0, size)
            head = source.read_at(0, 8)
            if head[:4] == b"PK\x03\x04" or (head[:4] == b"PK\x05\x06"):
                scan_zip(scan, handle, path.name)
            elif head[:4] == b"xar!":
                scan_pkg(scan, handle, path.name)
            else:
                scan.visit(path.name, source)
    except zipfile.BadZipFile as exc:
        raise PreflightInputError(
            f"{path}: not a readable zip archive ({exc}); re-create it with "
            "`ditto -c -k --keepParent`"
        ) from exc
    except PermissionError as exc:
        raise PreflightInputError(
            f"{path}: cannot be read ({exc.strerror}); check permissions"
        ) from exc
    except LimitError as exc:
        raise PreflightInputError(f"{path}: not checked: {exc}") from exc
    except CONTAINER_ERRORS as exc:
        raise PreflightInputError(
            f"{path}: cannot be read as an archive ({type(exc).__name__}: {exc})"
        ) from exc
