"""Preflight findings in the shape of a ``notarytool log``: one issue per path, message and slice.

``PreflightIssue`` carries the same fields as an issue in the notary log (``severity``, ``code``,
``path``, ``message``, ``docUrl``, ``architecture``) plus ``detail``, preflight's own
explanation of what it saw. ``PreflightReport`` is immutable once built; it is safe to share
between threads.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from uploader.lifecycle import NotaryStatus
from uploader.preflight.messages import DOC_URLS, FIXES, Severity
from uploader.terminal import printable  # member names may hold control characters


@dataclass(frozen=True)
class PreflightIssue:
    severity: Severity
    path: str
    message: str
    architecture: str | None = None
    detail: str | None = None
    code: None = None  # always null in real notary logs

    @property
    def doc_url(self) -> str | None:
        return DOC_URLS.get(self.message)

    def to_dict(self) -> dict[str, Any]:
        return {
            "severity": str(self.severity),
            "code": self.code,
            "path": printable(self.path),
            "message": self.message,
            "docUrl": self.doc_url,
            "architecture": self.architecture,
            "detail": None if self.detail is None else printable(self.detail),
        }


@dataclass(frozen=True)
class PreflightReport:
    """What preflight found in ``archive_filename``.

    Counts: ``files_scanned`` is every regular file looked at (first bytes read),
    ``macho_files`` those that were Mach-O, ``architecture_slices`` the slices checked.
    """

    archive_filename: str
    issues: tuple[PreflightIssue, ...] = ()
    files_scanned: int = 0
    macho_files: int = 0
    architecture_slices: int = 0
    elapsed_seconds: float = 0.0
    errors: tuple[PreflightIssue, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "errors", tuple(i for i in self.issues if i.severity is Severity.ERROR)
        )

    @property
    def has_errors(self) -> bool:
        return bool(self.errors)

    @property
    def warnings(self) -> tuple[PreflightIssue, ...]:
        return tuple(i for i in self.issues if i.severity is Severity.WARNING)

    def to_dict(self) -> dict[str, Any]:
        return {
            "logFormatVersion": 1,
            "tool": "notaryd preflight",
            "archiveFilename": printable(self.archive_filename),
            "status": NotaryStatus.INVALID if self.has_errors else NotaryStatus.ACCEPTED,
            "statusSummary": (
                "Archive contains critical validation errors"
                if self.has_errors
                else "Preflight found nothing the notary service is known to reject"
            ),
            "filesScanned": self.files_scanned,
            "machOFiles": self.macho_files,
            "architectureSlices": self.architecture_slices,
            "elapsedSeconds": round(self.elapsed_seconds, 3),
            "issues": [issue.to_dict() for issue in self.issues],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    def render_text(self) -> str:
        """Readable report: grouped by path, one line per message with its architectures."""
        lines = [self._summary_line()]
        by_path: dict[str, dict[tuple[Severity, str, str | None], list[str]]] = defaultdict(
            lambda: defaultdict(list)
        )
        for issue in self.issues:
            archs = by_path[issue.path][(issue.severity, issue.message, issue.detail)]
            if issue.architecture and issue.architecture not in archs:
                archs.append(issue.architecture)
        for path, findings in by_path.items():
            lines.append("")
            lines.append(printable(path))
            ordered = sorted(findings.items(), key=lambda kv: kv[0][0] is not Severity.ERROR)
            for (severity, message, detail), archs in ordered:
                where = f" [{', '.join(archs)}]" if archs else ""
                lines.append(f"  {severity:<7}{where} {message}")
                if detail:
                    lines.append(f"           {printable(detail)}")
                if fix := FIXES.get(message):
                    lines.append(f"           fix: {fix}")
        return "\n".join(lines) + "\n"

    def _summary_line(self) -> str:
        n_err, n_warn = len(self.errors), len(self.warnings)
        verdict = "FAIL" if n_err else "PASS"
        return (
            f"preflight {verdict}: {printable(self.archive_filename)}: {n_err} error(s), "
            f"{n_warn} warning(s); "
            f"{self.macho_files} Mach-O file(s), {self.architecture_slices} slice(s), "
            f"{self.files_scanned} file(s) scanned in {self.elapsed_seconds:.2f} s"
        )
