"""The one JSON convention of ``--json`` output, and the error document.

notaryd's own documents use snake_case keys, RFC 3339 times in UTC (``2026-12-07T16:09:03Z``)
and ``staple`` as an object with an ``outcome``. Two outputs keep the notary log's shape on
purpose, because tools read them as notary logs: ``log --json`` (Apple's document itself) and
``preflight --json`` (shaped like it). On any failure a command given ``--json`` prints
``{"error": {"code", "message", "fix"}}`` on stdout and exits with the code it would have
used without ``--json``.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from uploader.notary.client import SubmissionStatus
    from uploader.notary.ends import StapleNote


def rfc3339(value: float | str | None) -> str | None:
    """Unix time, or an ISO 8601 text from the notary service, as RFC 3339 in UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value  # not a time we can read: shown as the service sent it
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        moment = parsed.astimezone(UTC)
    else:
        try:
            moment = datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def submission(status: SubmissionStatus) -> dict[str, Any]:
    return {"id": status.id, "name": status.name, "status": status.status,
            "created_at": rfc3339(status.created_date)}


def staple(note: StapleNote | None) -> dict[str, Any] | None:
    if note is None:
        return None
    return {"outcome": note.outcome, "message": note.text}


def with_times(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with every ``*_at`` Unix time as RFC 3339."""
    return {key: rfc3339(value) if key.endswith("_at") and isinstance(value, (int, float))
            and not isinstance(value, bool) else value for key, value in document.items()}


def dumps(document: Any) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False)


def error_document(error: BaseException, message: str) -> dict[str, Any]:
    """``{"error": {"code", "message", "fix"}}``: the fix is what follows the first '; ' (our
    messages' convention), else the first sentence's end."""
    what, separator, fix = message.partition("; ")
    if not separator and (end := _SENTENCE_END.search(message)) is not None:
        what, fix = message[:end.start()], message[end.end():]
    return {"error": {"code": error_code(error), "message": what, "fix": fix or None}}


_SENTENCE_END = re.compile(r"\.\s+(?=[A-Z])")


def error_code(error: BaseException) -> str:
    """A stable snake_case code from the error's class: ``UnknownSubmission`` -> ``unknown_submission``."""
    name = type(error).__name__.lstrip("_")
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()
