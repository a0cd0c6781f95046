"""Turn a notary log (the JSON at ``developerLogUrl``) into a report a person can act on.

Log fields (Apple, "Customizing the notarization workflow", and captured logs): ``jobId``,
``status``, ``statusSummary``, ``statusCode`` (0 Accepted, 4000 Invalid, 7000 team not
configured), ``archiveFilename``, ``uploadDate``, ``sha256``, ``ticketContents`` (array or null),
``issues`` (array or null; each ``severity``, ``code``, ``path``, ``message``, ``docUrl``,
``architecture``). Missing or null fields are tolerated: the report shows what there is.

Issues with the same severity, message and doc link are grouped, listing every path/architecture
they were found at, because a bundle with 40 unsigned helpers otherwise prints 40 copies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from uploader.lifecycle import NotaryStatus
from uploader.terminal import printable


@dataclass(frozen=True)
class LogIssue:
    severity: str
    message: str
    path: str
    architecture: str | None
    doc_url: str | None
    code: str | None


@dataclass(frozen=True)
class IssueGroup:
    """Issues sharing severity, message and doc link; ``locations`` in log order."""

    severity: str
    message: str
    doc_url: str | None
    locations: tuple[tuple[str, str | None], ...]  # (path, architecture)


@dataclass(frozen=True)
class Ticket:
    path: str
    cdhash: str
    digest_algorithm: str
    arch: str | None


@dataclass(frozen=True)
class LogReport:
    submission_id: str
    status: str
    status_code: int | None
    status_summary: str
    archive_filename: str
    sha256: str | None
    upload_date: str | None
    issues: tuple[LogIssue, ...]
    groups: tuple[IssueGroup, ...]
    tickets: tuple[Ticket, ...]

    @property
    def accepted(self) -> bool:
        return self.status == NotaryStatus.ACCEPTED

    @property
    def error_count(self) -> int:
        return sum(1 for issue in self.issues if issue.severity == "error")

    def summary(self) -> str:
        """One line: verdict, code, summary and issue counts."""
        code = f" ({self.status_code})" if self.status_code is not None else ""
        text = f"{self.archive_filename or self.submission_id}: {self.status}{code}"
        if self.status_summary:
            text += f" - {self.status_summary}"
        if self.issues:
            warnings = len(self.issues) - self.error_count
            text += (
                f"; {self.error_count} error(s), {warnings} warning(s) in "
                f"{len(self.groups)} distinct problem(s)"
            )
        if self.tickets:
            text += f"; ticket covers {len(self.tickets)} code signature(s)"
        return text


def parse_log(doc: Mapping[str, Any]) -> LogReport:
    issues = tuple(_issue(item) for item in _list(doc.get("issues")) if isinstance(item, Mapping))
    tickets = tuple(
        Ticket(
            path=str(item.get("path") or ""),
            cdhash=str(item.get("cdhash") or ""),
            digest_algorithm=str(item.get("digestAlgorithm") or ""),
            arch=_optional_str(item.get("arch")),
        )
        for item in _list(doc.get("ticketContents"))
        if isinstance(item, Mapping)
    )
    status_code = doc.get("statusCode")
    return LogReport(
        submission_id=str(doc.get("jobId") or ""),
        status=str(doc.get("status") or "unknown"),
        status_code=status_code if isinstance(status_code, int) else None,
        status_summary=str(doc.get("statusSummary") or ""),
        archive_filename=str(doc.get("archiveFilename") or ""),
        sha256=_optional_str(doc.get("sha256")),
        upload_date=_optional_str(doc.get("uploadDate")),
        issues=issues,
        groups=_group(issues),
        tickets=tickets,
    )


def render_report(report: LogReport) -> str:
    """Plain text: the summary line, then each distinct problem with where it was found."""
    lines = [report.summary()]
    for group in report.groups:
        lines.append(f"{group.severity}: {group.message}")
        for path, arch in group.locations:
            lines.append(f"    {path}" + (f" [{arch}]" if arch else ""))
        if group.doc_url:
            lines.append(f"    see {group.doc_url}")
    return "\n".join(printable(line) for line in lines)  # every field came from the server


def to_json(report: LogReport) -> dict[str, Any]:
    """A stable JSON shape for ``--json`` output and the daemon's API."""
    return {
        "submission_id": report.submission_id,
        "status": report.status,
        "status_code": report.status_code,
        "status_summary": report.status_summary,
        "archive_filename": report.archive_filename,
        "sha256": report.sha256,
        "upload_date": report.upload_date,
        "summary": report.summary(),
        "issues": [
            {
                "severity": group.severity,
                "message": group.message,
                "doc_url": group.doc_url,
                "locations": [
                    {"path": path, "architecture": arch} for path, arch in group.locations
                ],
            }
            for group in report.groups
        ],
        "tickets": [
            {
                "path": t.path,
                "cdhash": t.cdhash,
                "digest_algorithm": t.digest_algorithm,
                "arch": t.arch,
            }
            for t in report.tickets
        ],
    }


def _issue(item: Mapping[str, Any]) -> LogIssue:
    return LogIssue(
        severity=str(item.get("severity") or "error"),
        message=str(item.get("message") or "(no message)"),
        path=str(item.get("path") or "(archive)"),
        architecture=_optional_str(item.get("architecture")),
        doc_url=_optional_str(item.get("docUrl")),
        code=_optional_str(item.get("code")),
    )


def _group(issues: tuple[LogIssue, ...]) -> tuple[IssueGroup, ...]:
    order: list[tuple[str, str, str | None]] = []
    locations: dict[tuple[str, str, str | None], list[tuple[str, str | None]]] = {}
    for issue in issues:
        key = (issue.severity, issue.message, issue.doc_url)
        if key not in locations:
            order.append(key)
            locations[key] = []
        where = (issue.path, issue.architecture)
        if where not in locations[key]:
            locations[key].append(where)
    # errors before warnings, otherwise log order
    order.sort(key=lambda key: key[0] != "error")
    return tuple(
        IssueGroup(severity=s, message=m, doc_url=d, locations=tuple(locations[(s, m, d)]))
        for s, m, d in order
    )


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)
