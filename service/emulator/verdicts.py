"""What the emulated notary service decides about an upload, and the developer log it writes.

A landed object is read back once (``inspect``): hashed, and searched for the byte markers the
``VerdictRule``s name. The first rule that matches the submission's name and markers gives the
verdict; with none, the upload is Accepted. ``developer_log`` writes the JSON document Apple's
``developerLogUrl`` serves (status, summary, code, issues, ticket contents).
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from service.emulator.responses import iso_time
from uploader.lifecycle import NotaryStatus

INVALID_MARKER = b"NOTARY-EMULATOR:INVALID"
REJECTED_MARKER = b"NOTARY-EMULATOR:REJECTED"

_ISSUES_DOC = (
    "https://developer.apple.com/documentation/security/resolving-common-notarization-issues"
)


def _default_issues() -> tuple[Mapping[str, Any], ...]:
    def issue(message: str, anchor: str, architecture: str) -> Mapping[str, Any]:
        return {
            "severity": "error",
            "code": None,
            "path": "app.zip/App.app/Contents/MacOS/App",
            "message": message,
            "docUrl": f"{_ISSUES_DOC}#{anchor}",
            "architecture": architecture,
        }

    unsigned = "The binary is not signed with a valid Developer ID certificate."
    return (
        issue(unsigned, "3087721", "x86_64"),
        issue(unsigned, "3087721", "arm64"),
        issue("The executable does not have the hardened runtime enabled.", "3087724", "arm64"),
    )


@dataclass(frozen=True)
class VerdictRule:
    """Gives a submission a non-Accepted verdict when its name or uploaded bytes match.

    ``name_glob`` is an fnmatch pattern on the submission name; ``content_marker`` a byte string
    found anywhere in the uploaded object. A rule with both needs both; the first match wins.
    """

    status: NotaryStatus = NotaryStatus.INVALID
    name_glob: str | None = None
    content_marker: bytes | None = None
    status_code: int = 4000
    status_summary: str = "Archive contains critical validation errors"
    issues: tuple[Mapping[str, Any], ...] = field(default_factory=_default_issues)

    def matches(self, name: str, markers_found: frozenset[bytes]) -> bool:
        if self.name_glob is None and self.content_marker is None:
            return False
        if self.name_glob is not None and not fnmatch.fnmatchcase(name, self.name_glob):
            return False
        return self.content_marker is None or self.content_marker in markers_found


DEFAULT_RULES: tuple[VerdictRule, ...] = (
    VerdictRule(status=NotaryStatus.INVALID, content_marker=INVALID_MARKER),
    VerdictRule(
        status=NotaryStatus.REJECTED,
        content_marker=REJECTED_MARKER,
        status_code=7000,
        status_summary="Team is not yet configured for notarization. Please contact Developer "
        "Programs Support at developer.apple.com under the topic Development and Technical / "
        "Other Development or Technical Questions.",
        issues=(),
    ),
)


@dataclass(frozen=True)
class Inspection:
    """What reading the landed object back found."""

    sha256: str
    size: int
    markers: frozenset[bytes]


async def inspect(chunks: AsyncIterator[bytes], rules: Iterable[VerdictRule]) -> Inspection:
    """Hash the object and find the rules' markers, a chunk at a time off the event loop.

    A marker split across two chunks is found: each scan also covers the previous chunk's tail.
    """
    wanted = [rule.content_marker for rule in rules if rule.content_marker]
    overlap = max((len(m) for m in wanted), default=1) - 1
    digest = hashlib.sha256()
    found: set[bytes] = set()
    tail = b""
    size = 0

    def scan(chunk: bytes, tail: bytes) -> bytes:
        digest.update(chunk)
        window = tail + chunk
        found.update(marker for marker in wanted if marker in window)
        return window[-overlap:] if overlap else b""

    async for chunk in chunks:
        size += len(chunk)
        tail = await asyncio.to_thread(scan, chunk, tail)
    return Inspection(sha256=digest.hexdigest(), size=size, markers=frozenset(found))


def first_match(
    rules: Iterable[VerdictRule], name: str, markers: frozenset[bytes]
) -> VerdictRule | None:
    return next((rule for rule in rules if rule.matches(name, markers)), None)


def hash_mismatch_rule(declared: str, uploaded: str, name: str) -> VerdictRule:
    """Invalid: the object that landed is not the archive whose SHA-256 was declared."""
    return VerdictRule(
        status=NotaryStatus.INVALID,
        status_summary="Archive contains critical validation errors",
        issues=({
            "severity": "error",
            "code": None,
            "path": name,
            "message": f"The archive does not match its declared hash: sha256 {uploaded} was "
                       f"uploaded, {declared} was declared at submission.",
            "docUrl": None,
            "architecture": None,
        },),
    )


def developer_log(
    rule: VerdictRule | None,
    *,
    submission_id: str,
    name: str,
    sha256: str,
    uploaded_at: float,
    ticket_contents: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The developer log of a verdict: ``rule``'s, or Accepted with ``ticket_contents`` (the
    signatures it ticketed; ``null`` when there were none)."""
    accepted = rule is None
    return {
        "logFormatVersion": 1,
        "jobId": submission_id,
        "status": str(rule.status if rule else NotaryStatus.ACCEPTED),
        "statusSummary": rule.status_summary if rule else "Ready for distribution",
        "statusCode": rule.status_code if rule else 0,
        "archiveFilename": name,
        "uploadDate": iso_time(uploaded_at),
        "sha256": sha256,
        "ticketContents": [dict(entry) for entry in ticket_contents]
                          if accepted and ticket_contents else None,
        "issues": [dict(issue) for issue in rule.issues] if rule and rule.issues else None,
    }
