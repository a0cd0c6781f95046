"""The Notary REST API (``/notary/v2``) as data, without I/O: requests out, answers in.

h11-style: nothing here opens a socket, reads a clock or sleeps. The transport
(``uploader.notary.client``) sends what ``submit_body`` and ``submission_path`` make, and
hands each answer back as an ``Answer`` (status, headers, body bytes); the functions here turn
it into a typed result (``NewSubmission``, ``SubmissionStatus``, a log URL, a history) or
raise the ``NotaryError`` it means. Which error a refusal means is one table, ``ERRORS``
(``{status: factory}``; any other 5xx is a ``ServerError``, any other status a
``RequestRejected``), and ``LOG_ERRORS`` for the pre-signed log download.

Wire facts this relies on (see the reference note on the notary API):

* Success bodies are ``{"data": ..., "meta": {}}`` and are often served as
  ``application/octet-stream``, so bodies are parsed as JSON whatever the Content-Type.
* 401 is plain text (``Unauthenticated`` + ``Request ID: ...``); 403/404/429 carry JSON:API
  ``{"errors": [{"status": "403", "code": ..., "title": ..., "detail": ...}]}`` with string status.
* A complete answer that is not the expected JSON (a proxy's page, the wrong URL) is a
  permanent ``BadResponse``: asking again gets the same answer.
* Every string field that is kept is checked for shape and length: ids end up in file names,
  S3 requests, SQL rows and messages. Server-supplied text is shown on one printable line.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from uploader.constants import CREDENTIAL_LIFETIME_SECONDS
from uploader.credentials import Credentials
from uploader.lifecycle import NotaryStatus
from uploader.notary.errors import (
    AgreementMissing,
    BadResponse,
    Forbidden,
    LogUrlExpired,
    MissingProvider,
    NotaryError,
    NotFound,
    RateLimited,
    RequestRejected,
    ServerError,
    Unauthenticated,
)

_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_REQUEST_ID = re.compile(r"Request ID:\s*([\w.-]{1,80})")
# Shapes of fields that end up in file names, S3 requests and messages.
_SUBMISSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,79}$")
_ACCESS_KEY_ID = re.compile(r"^[A-Z0-9]{16,128}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_S3_CODE = re.compile(rb"<Code>([^<]{1,64})</Code>")


@dataclass(frozen=True)
class Answer:
    """What came back for one request, after redirects: its body read under its cap."""

    status: int
    headers: Mapping[str, str]
    body: bytes  # empty when the body went to a sink


@dataclass(frozen=True)
class Caller:
    """Who asked: named in a 401's message (with a hint when the key file names another id)."""

    key_id: str
    issuer_id: str
    hint: str = ""


@dataclass(frozen=True)
class NewSubmission:
    id: str
    bucket: str
    object: str
    credentials: Credentials


@dataclass(frozen=True)
class SubmissionStatus:
    id: str
    name: str
    status: str  # a NotaryStatus value; one Apple adds later is passed through
    created_date: str  # ISO 8601 as the service sent it, e.g. 2022-06-08T01:38:09.498Z

    @property
    def is_terminal(self) -> bool:
        """True for any status but IN_PROGRESS (unknown ones included, like notarytool)."""
        return self.status != NotaryStatus.IN_PROGRESS

    @property
    def created_at(self) -> float | None:
        """``created_date`` as Unix seconds, or None if it does not parse."""
        return parse_iso8601(self.created_date)


def parse_iso8601(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


# -- requests ------------------------------------------------------------------------------


def submit_body(name: str, sha256: str, webhook: str | None = None) -> bytes:
    """The JSON body of ``POST /submissions``; ``ValueError`` for a name or digest it cannot be."""
    if not name or "/" in name:
        raise ValueError(f"submission name must be a file name, got {name!r}")
    if not _SHA256.match(sha256):
        raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")
    body: dict[str, Any] = {"submissionName": name, "sha256": sha256.lower()}
    if webhook:
        body["notifications"] = [{"channel": "webhook", "target": webhook}]
    return json.dumps(body).encode()


def submission_path(submission_id: str, tail: str = "") -> str:
    """``/submissions/{id}`` (+ ``tail``, e.g. ``/logs``), the id quoted."""
    if not submission_id or "/" in submission_id:
        raise ValueError(f"not a submission id: {submission_id!r}")
    return f"/submissions/{quote(submission_id, safe='-')}{tail}"


# -- answers -------------------------------------------------------------------------------


def document(endpoint: str, answer: Answer, caller: Caller, now: float) -> dict[str, Any]:
    """The JSON object of a 200 answer; any other status raises the error it means."""
    if answer.status != 200:
        raise error_for(endpoint, answer, caller, now)
    doc = parse_json(answer.body)
    if not isinstance(doc, dict):
        raise BadResponse(endpoint=endpoint, status=200, detail="the body is not a JSON object")
    return doc


def new_submission(doc: Mapping[str, Any], issued_at: float) -> NewSubmission:
    """The answer to ``POST /submissions``; the credentials last 12 h from ``issued_at``."""
    data = _data_object(doc, "submit")
    attrs = _attributes(data, "submit")
    credentials = Credentials(
        access_key_id=_text(attrs, "awsAccessKeyId", "submit", _ACCESS_KEY_ID),
        secret_access_key=_text(attrs, "awsSecretAccessKey", "submit", max_length=256),
        session_token=_text(attrs, "awsSessionToken", "submit", max_length=8192),
        expires_at=issued_at + CREDENTIAL_LIFETIME_SECONDS,
    )
    return NewSubmission(
        id=_text(data, "id", "submit", _SUBMISSION_ID),
        bucket=_text(attrs, "bucket", "submit", _BUCKET),
        object=_text(attrs, "object", "submit", max_length=1024),
        credentials=credentials,
    )


def submission_status(doc: Mapping[str, Any]) -> SubmissionStatus:
    """The answer to ``GET /submissions/{id}``."""
    return _submission_status(_data_object(doc, "status"), "status")


def log_url(doc: Mapping[str, Any]) -> str:
    """The pre-signed URL in the answer to ``GET /submissions/{id}/logs`` (not yet checked)."""
    url = _attributes(_data_object(doc, "logs"), "logs").get("developerLogUrl")
    if not isinstance(url, str) or not url:
        raise BadResponse(endpoint="logs", detail="no developerLogUrl in the answer")
    return url


def history(doc: Mapping[str, Any]) -> list[SubmissionStatus]:
    """The answer to ``GET /submissions``: the team's 100 most recent, newest first."""
    items = doc.get("data")
    if not isinstance(items, list):
        raise BadResponse(endpoint="history", detail="'data' is not a list")
    return [_submission_status(item, "history") for item in items]


def log_document(doc: Any, status: int = 200) -> dict[str, Any]:
    """The parsed developer log, which must be a JSON object."""
    if not isinstance(doc, dict):
        raise BadResponse(endpoint="log_download", status=status,
                          detail="the log is not a JSON object")
    return doc


def parse_json(raw: bytes) -> Any:
    """The JSON value of ``raw``, or None for anything that is not JSON."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: deep nesting
        return None


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    with contextlib.suppress(TypeError, ValueError, IndexError):
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - now)
    return None


# -- refusals ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """A non-200 answer, read: what the error factories build their ``NotaryError`` from."""

    endpoint: str
    answer: Answer
    code: str  # the first JSON:API error's code, or ""
    detail: str  # its title and detail on one line, or ""
    caller: Caller
    now: float


def _unauthenticated(refusal: Refusal) -> NotaryError:
    match = _REQUEST_ID.search(refusal.answer.body.decode("utf-8", "replace"))
    return Unauthenticated(
        key_id=refusal.caller.key_id, issuer_id=refusal.caller.issuer_id,
        endpoint=refusal.endpoint, request_id=match.group(1) if match else None,
        hint=refusal.caller.hint,
    )


def _forbidden(refusal: Refusal) -> NotaryError:
    endpoint, code, detail = refusal.endpoint, refusal.code, refusal.detail
    if code == "FORBIDDEN.MISSING_PROVIDER":
        return MissingProvider(endpoint=endpoint, detail=detail)
    if "AGREEMENT" in code.upper() or "agreement" in detail.lower():
        return AgreementMissing(endpoint=endpoint, detail=detail)
    return Forbidden(endpoint=endpoint, code=code, detail=detail)


def _rate_limited(refusal: Refusal) -> NotaryError:
    wait = parse_retry_after(refusal.answer.headers.get("Retry-After"), refusal.now)
    return RateLimited(endpoint=refusal.endpoint, retry_after_seconds=wait, detail=refusal.detail)


def _any_other(refusal: Refusal) -> NotaryError:
    """A status the table does not name: 5xx is the service's trouble, the rest a refusal."""
    status = refusal.answer.status
    if status >= 500:
        return ServerError(endpoint=refusal.endpoint, status=status, detail=refusal.detail)
    return RequestRejected(endpoint=refusal.endpoint, status=status,
                           detail=refusal.detail or refusal.code)


def _log_url_expired(refusal: Refusal) -> NotaryError:
    return LogUrlExpired(status=refusal.answer.status, detail=refusal.code)


Factory = Callable[[Refusal], NotaryError]

# The API's refusals by status (plus ``_any_other``).
ERRORS: dict[int, Factory] = {
    401: _unauthenticated,
    403: _forbidden,
    404: lambda refusal: NotFound(endpoint=refusal.endpoint, detail=refusal.detail),
    429: _rate_limited,
}
# S3's refusals of a pre-signed log URL (XML ``<Code>``): the URL expired or is not valid.
LOG_ERRORS: dict[int, Factory] = {400: _log_url_expired, 401: _log_url_expired,
                                  403: _log_url_expired}


def error_for(endpoint: str, answer: Answer, caller: Caller, now: float) -> NotaryError:
    """The ``NotaryError`` an API refusal means (``ERRORS``)."""
    code, detail = first_error(answer.body)
    refusal = Refusal(endpoint, answer, code, detail, caller, now)
    return ERRORS.get(answer.status, _any_other)(refusal)


def log_download_error(answer: Answer) -> NotaryError:
    """The ``NotaryError`` a refused log download means (``LOG_ERRORS``)."""
    code = s3_error_code(answer.body)  # the detail of a 5xx is left out, as it always was
    refusal = Refusal("log_download", answer, code, "", Caller("", ""), 0.0)
    return LOG_ERRORS.get(answer.status, _any_other)(refusal)


def first_error(raw: bytes) -> tuple[str, str]:
    """(code, detail) of the first JSON:API error in ``raw``, or ("", "") if there is none."""
    doc = parse_json(raw)
    if not isinstance(doc, dict):
        return "", ""
    errors = doc.get("errors")
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return "", ""
    first = errors[0]
    code = one_line(str(first.get("code") or ""), 80)
    title = one_line(str(first.get("title") or ""), 200)
    detail = one_line(str(first.get("detail") or ""), 400)
    if title and detail and title != detail and not detail.startswith(title):
        detail = f"{title}. {detail}"
    return code, (detail or title)


def s3_error_code(body: bytes) -> str:
    """S3's ``<Code>`` from an XML error body, on one line, or ""."""
    match = _S3_CODE.search(body)
    return one_line(match.group(1).decode("ascii", "replace"), 64) if match else ""


def one_line(text: str, limit: int) -> str:
    """Server-supplied text made safe to print: printable, one line, bounded."""
    cleaned = " ".join("".join(c if c.isprintable() else " " for c in text[: limit * 2]).split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def _data_object(doc: Mapping[str, Any], endpoint: str) -> Mapping[str, Any]:
    data = doc.get("data")
    if not isinstance(data, dict):
        raise BadResponse(endpoint=endpoint, detail="'data' is not an object")
    return data


def _attributes(data: Mapping[str, Any], endpoint: str) -> Mapping[str, Any]:
    attrs = data.get("attributes")
    if not isinstance(attrs, dict):
        raise BadResponse(endpoint=endpoint, detail="'data.attributes' is not an object")
    return attrs


def _submission_status(data: Any, endpoint: str) -> SubmissionStatus:
    if not isinstance(data, dict):
        raise BadResponse(endpoint=endpoint, detail="submission entry is not an object")
    attrs = _attributes(data, endpoint)
    return SubmissionStatus(
        id=_text(data, "id", endpoint, _SUBMISSION_ID),
        name=_text(attrs, "name", endpoint, required=False),
        status=_text(attrs, "status", endpoint, max_length=64),
        created_date=_text(attrs, "createdDate", endpoint, required=False, max_length=64),
    )


def _text(
    obj: Mapping[str, Any],
    key: str,
    endpoint: str,
    pattern: re.Pattern[str] | None = None,
    *,
    max_length: int = 1024,
    required: bool = True,
) -> str:
    """A string field of an answer, checked: it ends up in file names, SQL rows and messages."""
    value = obj.get(key)
    if value is None and not required:
        return ""
    if (not isinstance(value, str) or (required and not value) or len(value) > max_length
            or not value.isprintable() or (pattern is not None and not pattern.match(value))):
        raise BadResponse(endpoint=endpoint, detail=f"field '{key}' is missing or malformed")
    return value
