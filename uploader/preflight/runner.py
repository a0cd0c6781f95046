"""``run_preflight(target)``: run the walker for what ``target`` is and assemble the report.

An ``Artifact`` (``uploader.artifact``) names its walker in its kind's row; a bare path (``notaryd
preflight`` takes any folder or Mach-O too) is walked by what it holds (``toplevel.walk_path``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509

from uploader.preflight import messages as msg
from uploader.preflight.apple_roots import apple_roots
from uploader.preflight.limits import DEFAULT_LIMITS, Limits, ScanAborted
from uploader.preflight.macho import Kind
from uploader.preflight.messages import Severity
from uploader.preflight.pkg import scan_pkg
from uploader.preflight.report import PreflightIssue, PreflightReport
from uploader.preflight.toplevel import walk_path
from uploader.preflight.walk import ContainerScanner, PreflightInputError, Scan, scan_zip

if TYPE_CHECKING:
    from uploader.artifact import Artifact

# The archives preflight opens, by the kind their first bytes say; ``Scan`` descends through it.
CONTAINER_SCANNERS: dict[Kind, ContainerScanner] = {Kind.ZIP: scan_zip, Kind.XAR: scan_pkg}


def run_preflight(
    target: Path | Artifact,
    *,
    trust_anchors: Sequence[x509.Certificate] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> PreflightReport:
    """Check ``target``: an opened ``Artifact`` with its kind's walker, or any path (folder,
    .zip, .pkg, Mach-O; .dmg is reported as not inspected) by what it holds.

    ``trust_anchors`` replaces Apple Root CA as the root Developer ID chains must reach (tests
    use it with their own generated CA); ``limits`` bounds memory, time and temp space.
    Blocking: call it through ``asyncio.to_thread`` from async code. Raises
    ``PreflightInputError`` when ``path`` does not exist or its top-level archive is unreadable;
    anything unreadable inside it is an error in the report.
    """
    from uploader.artifact import Artifact

    walker, path = ((target.kind.preflight, target.path) if isinstance(target, Artifact)
                    else (walk_path, Path(target)))
    started = time.perf_counter()
    anchors = apple_roots() if trust_anchors is None else tuple(trust_anchors)
    scan = Scan(anchors, limits, containers=CONTAINER_SCANNERS)
    try:
        walker(scan, path)
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
    _conclude(scan, path.name)
    counts = {"files_scanned": scan.files_scanned, "macho_files": scan.macho_files,
              "architecture_slices": scan.slices}
    return PreflightReport(path.name, tuple(scan.issues), **counts,
                           elapsed_seconds=time.perf_counter() - started)


def _conclude(scan: Scan, name: str) -> None:
    """The closing findings: issues past the limit, and nothing to ticket."""
    if scan.omitted:
        errors, warnings = scan.omitted[Severity.ERROR], scan.omitted[Severity.WARNING]
        scan.issues.append(
            PreflightIssue(
                Severity.ERROR if errors else Severity.WARNING,
                name,
                msg.ISSUES_OMITTED,
                detail=f"{errors} more error(s) and {warnings} more warning(s) are not listed",
            )
        )
    if scan.macho_files == 0 and not any(
        i.message in (msg.DMG_NOT_INSPECTED, msg.CONTAINER_NOT_INSPECTED, msg.SCAN_STOPPED)
        for i in scan.issues
    ):
        scan.add(Severity.ERROR, name, msg.NO_CODE_FOUND)  # nothing to ticket
