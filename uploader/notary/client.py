"""One-shot calls to the Notary REST API (``/notary/v2``), each mapped to typed results or errors.

Wire facts this relies on (see the reference note on the notary API):

* Success bodies are ``{"data": ..., "meta": {}}`` and are often served as
  ``application/octet-stream``, so bodies are parsed as JSON whatever the Content-Type.
* 401 is plain text (``Unauthenticated`` + ``Request ID: ...``); 403/404/429 carry JSON:API
  ``{"errors": [{"status": "403", "code": ..., "title": ..., "detail": ...}]}`` with string status.
* The log is fetched from a pre-signed URL **without** the Bearer token (S3 refuses two
  authentication mechanisms at once); the URL's query carries credentials, so it only ever appears
  in messages through ``redact_url``.

Answers are read strictly (see ``ResponseLimits`` and ``uploader.notary.url_policy``): every body
has a size cap (the log is streamed to a temporary file, never held as bytes), redirects are
followed only to URLs the policy allows (and, for calls that carry the Bearer token, only within
the API's own origin), and a complete answer that is not the expected JSON is a permanent
``BadResponse``, never retried.

The calls do not retry: the pipeline owns retries (``with_retries`` below is the helper it uses).
Every exchange emits ``NotaryRequestDone(endpoint, code)`` with the HTTP status or ``"error"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import random
import re
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Any, TypeVar
from urllib.parse import quote, urljoin, urlsplit

import aiohttp

from uploader.constants import CREDENTIAL_LIFETIME_SECONDS, RATE_LIMIT_FLOOR_SECONDS
from uploader.credentials import Credentials
from uploader.events import Emitter, Hook, NotaryRequestDone
from uploader.lifecycle import NotaryStatus
from uploader.notary.auth import TokenSource
from uploader.notary.errors import (
    AgreementMissing,
    BadResponse,
    Forbidden,
    LogUrlExpired,
    MissingProvider,
    NetworkError,
    NotaryError,
    NotFound,
    RateLimited,
    RequestRejected,
    ResponseTooLarge,
    ServerError,
    Unauthenticated,
    UnsafeUrl,
)
from uploader.notary.url_policy import GuardedConnector, Resolver, UrlPolicy, resolve
from uploader.proxies import proxy_for_request
from uploader.redaction import redact_url, redact_urls_in
from uploader.retry import Retrier, RetryPolicy

T = TypeVar("T")

_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_REQUEST_ID = re.compile(r"Request ID:\s*([\w.-]{1,80})")
# Shapes of fields that end up in file names, S3 requests and messages.
_SUBMISSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,79}$")
_ACCESS_KEY_ID = re.compile(r"^[A-Z0-9]{16,128}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class RequestTimeouts:
    """Per-request limits in seconds; well below the token refresh margin (3 min)."""

    connect_seconds: float = 10.0
    read_seconds: float = 30.0
    total_seconds: float = 120.0

    def client_timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(
            total=self.total_seconds, connect=self.connect_seconds, sock_read=self.read_seconds
        )


@dataclass(frozen=True)
class ResponseLimits:
    """Caps on what the client reads; far above anything the notary service sends.

    The log cap also bounds the memory of the parsed log (a few hundred MiB at worst for a
    hostile shape such as millions of empty objects); real logs are well under 1 MiB.
    """

    json_bytes: int = 1024 * 1024  # history of 100 submissions is ~40 KB
    error_bytes: int = 64 * 1024  # error bodies are read for a code and a detail only
    log_bytes: int = 8 * 1024 * 1024
    max_redirects: int = 5


_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes  # empty when the body went to a sink


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
    from datetime import datetime

    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def notary_session(
    api_url: str, *configured_urls: str, trace_configs: list[aiohttp.TraceConfig] | None = None
) -> aiohttp.ClientSession:
    """A session for everything a notarisation fetches (API, log URLs, ticket lookups).

    Its connector checks every address when it connects (``GuardedConnector``: names and IP
    literals, on every redirect hop), so a URL that passed ``UrlPolicy`` cannot rebind to this
    machine, and a redirect aiohttp follows by itself cannot reach it either. The hosts of
    ``api_url`` and of ``configured_urls`` (the ticket lookup's) are the operator's choice and
    may be anywhere. Timeouts, body caps and the proxy (``uploader.proxies``) are per
    request.
    Share one across clients of the same ``api_url``; whoever creates it closes it.
    """
    return aiohttp.ClientSession(
        connector=GuardedConnector(api_url, *configured_urls),
        trace_configs=trace_configs,
    )


class NotaryClient:
    """Calls to one notary service with one API key. Safe to share between tasks.

    Pass a ``notary_session(api_url)`` to share connections (the caller closes it); otherwise
    the client creates one and ``close()`` (or ``async with``) closes it.
    """

    def __init__(
        self,
        api_url: str,
        token_source: TokenSource,
        session: aiohttp.ClientSession | None = None,
        hooks: Iterable[Hook] = (),
        *,
        timeouts: RequestTimeouts | None = None,
        clock: Callable[[], float] = time.time,
        limits: ResponseLimits | None = None,
        resolver: Resolver = resolve,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._limits = limits or ResponseLimits()
        self._urls = UrlPolicy(self.api_url, resolver)
        self._tokens = token_source
        self._session = session
        self._owns_session = session is None
        self._emit = Emitter(hooks)
        self._timeouts = timeouts or RequestTimeouts()
        self._clock = clock

    def __repr__(self) -> str:
        return f"<NotaryClient {self.api_url} key_id={self._tokens.key_id!r}>"

    async def __aenter__(self) -> NotaryClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = notary_session(self.api_url)
        return self._session

    # -- endpoints ---------------------------------------------------------------------------

    async def submit(self, name: str, sha256: str, webhook: str | None = None) -> NewSubmission:
        """``POST /submissions``. Not idempotent: each call creates a submission."""
        if not name or "/" in name:
            raise ValueError(f"submission name must be a file name, got {name!r}")
        if not _SHA256.match(sha256):
            raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")
        body: dict[str, Any] = {"submissionName": name, "sha256": sha256.lower()}
        if webhook:
            body["notifications"] = [{"channel": "webhook", "target": webhook}]
        issued_at = self._clock()
        doc = await self._call("submit", "POST", "/submissions", body)
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

    async def status(self, submission_id: str) -> SubmissionStatus:
        """``GET /submissions/{id}``."""
        doc = await self._call("status", "GET", f"/submissions/{_quote_id(submission_id)}")
        return _submission_status(_data_object(doc, "status"), "status")

    async def log_url(self, submission_id: str) -> str:
        """``GET /submissions/{id}/logs``: the pre-signed log URL (404 until a verdict exists)."""
        doc = await self._call("logs", "GET", f"/submissions/{_quote_id(submission_id)}/logs")
        url = _attributes(_data_object(doc, "logs"), "logs").get("developerLogUrl")
        if not isinstance(url, str) or not url:
            raise BadResponse(endpoint="logs", detail="no developerLogUrl in the answer")
        await self._urls.check(url, "logs")
        return url

    async def history(self) -> list[SubmissionStatus]:
        """``GET /submissions``: the team's 100 most recent submissions, newest first."""
        doc = await self._call("history", "GET", "/submissions")
        items = doc.get("data")
        if not isinstance(items, list):
            raise BadResponse(endpoint="history", detail="'data' is not a list")
        return [_submission_status(item, "history") for item in items]

    async def download_log(self, url: str) -> dict[str, Any]:
        """Fetch the JSON log from a pre-signed URL, without the Authorization header.

        The body is streamed to an anonymous temporary file (capped at ``ResponseLimits.
        log_bytes``) and parsed from there on a worker thread.
        """
        endpoint = "log_download"
        await self._urls.check(url, endpoint)
        spool = await asyncio.to_thread(tempfile.TemporaryFile)
        try:
            answer = await self._exchange(
                endpoint, "GET", url, headers={}, cap=self._limits.log_bytes,
                same_origin=False, sink=spool,
            )
            status = answer.status
            if status != 200:
                body = await asyncio.to_thread(_read_back, spool, self._limits.error_bytes)
                if status in (400, 401, 403):
                    raise LogUrlExpired(status=status, detail=_s3_error_code(body))
                if status >= 500:
                    raise ServerError(endpoint=endpoint, status=status)
                raise RequestRejected(
                    endpoint=endpoint, status=status, detail=_s3_error_code(body)
                )
            doc = await asyncio.to_thread(_parse_json_file, spool)
        finally:
            await asyncio.to_thread(spool.close)
        if not isinstance(doc, dict):
            raise BadResponse(
                endpoint=endpoint, status=status, detail="the log is not a JSON object"
            )
        return doc

    # -- plumbing ----------------------------------------------------------------------------

    async def _call(
        self, endpoint: str, method: str, path: str, body: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        headers = {"Authorization": self._tokens.authorization(), "Accept": "application/json"}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        answer = await self._exchange(
            endpoint, method, self.api_url + path, headers=headers, data=data,
            cap=self._limits.json_bytes, same_origin=True,
        )
        if answer.status == 200:
            doc = _parse_json(answer.body)
            if not isinstance(doc, dict):
                raise BadResponse(
                    endpoint=endpoint, status=200, detail="the body is not a JSON object"
                )
            return doc
        raise self._error_for(endpoint, answer.status, answer.body, answer.headers)

    async def _exchange(
        self,
        endpoint: str,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        cap: int,
        same_origin: bool,
        data: bytes | None = None,
        sink: IO[bytes] | None = None,
    ) -> _Answer:
        """One request, following only allowed redirects; the body read under ``cap``.

        ``same_origin``: redirects must stay on the API's scheme, host and port (the request
        carries the Bearer token, which must not travel anywhere else).
        """
        for _ in range(self._limits.max_redirects + 1):
            try:
                async with self._http().request(
                    method, url, data=data, headers=headers, allow_redirects=False,
                    timeout=self._timeouts.client_timeout(), proxy=await proxy_for_request(url),
                ) as response:
                    status = response.status
                    location = response.headers.get("Location")
                    if status in _REDIRECTS and location:
                        self._emit(NotaryRequestDone(endpoint, str(status)))
                        url = await self._redirect_target(endpoint, url, location, same_origin)
                        if status == 303:
                            method, data = "GET", None
                        continue
                    if status == 200:
                        body = await read_capped(response, cap, endpoint, sink)
                    else:  # an error page is read for its code and detail only
                        body = await read_capped(
                            response, self._limits.error_bytes, endpoint, sink, truncate=True
                        )
                    answer = _Answer(status, response.headers, body)
            except (aiohttp.ClientError, TimeoutError, OSError) as error:
                self._emit(NotaryRequestDone(endpoint, "error"))
                what = endpoint if same_origin else redact_url(url)
                raise NetworkError(endpoint=endpoint, cause=_describe(error, what)) from None
            self._emit(NotaryRequestDone(endpoint, str(answer.status)))
            return answer
        raise UnsafeUrl(endpoint=endpoint, url=redact_url(url),
                        reason=f"more than {self._limits.max_redirects} redirects")

    async def _redirect_target(
        self, endpoint: str, current: str, location: str, same_origin: bool
    ) -> str:
        target = urljoin(current, location)
        if same_origin:
            here, there = urlsplit(current), urlsplit(target)
            if (here.scheme, here.netloc) != (there.scheme, there.netloc):
                raise UnsafeUrl(endpoint=endpoint, url=redact_url(target),
                                reason="a redirect away from the API's own host")
        await self._urls.check(target, endpoint)
        return target

    def _error_for(
        self, endpoint: str, status: int, raw: bytes, headers: Mapping[str, str]
    ) -> NotaryError:
        code, detail = _first_error(raw)
        if status == 401:
            match = _REQUEST_ID.search(raw.decode("utf-8", "replace"))
            return Unauthenticated(
                key_id=self._tokens.key_id,
                issuer_id=self._tokens.issuer_id,
                endpoint=endpoint,
                request_id=match.group(1) if match else None,
                hint=self._tokens.key.mismatch_hint(),
            )
        if status == 403:
            if code == "FORBIDDEN.MISSING_PROVIDER":
                return MissingProvider(endpoint=endpoint, detail=detail)
            if "AGREEMENT" in code.upper() or "agreement" in detail.lower():
                return AgreementMissing(endpoint=endpoint, detail=detail)
            return Forbidden(endpoint=endpoint, code=code, detail=detail)
        if status == 404:
            return NotFound(endpoint=endpoint, detail=detail)
        if status == 429:
            return RateLimited(
                endpoint=endpoint,
                retry_after_seconds=parse_retry_after(headers.get("Retry-After"), self._clock()),
                detail=detail,
            )
        if status >= 500:
            return ServerError(endpoint=endpoint, status=status, detail=detail)
        return RequestRejected(endpoint=endpoint, status=status, detail=detail or code)


async def with_retries(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    *,
    on_retry: Callable[[NotaryError, float], None] | None = None,
    rate_limit_floor_seconds: float = RATE_LIMIT_FLOOR_SECONDS,
    uniform: Callable[[float, float], float] = random.uniform,
) -> T:
    """Run ``call`` until it succeeds, retrying transient ``NotaryError``s per ``policy``.

    After a 429 the sleep is at least the server's Retry-After, or ``rate_limit_floor_seconds``
    when it gave none (Apple's quota is hourly: hammering it only prolongs the lock-out).
    Non-transient errors and the last error after ``policy.max_attempts`` propagate.
    ``on_retry(error, delay)`` is told about each retry before the sleep.
    """
    retrier = Retrier(policy, sleep, uniform)

    def decide(error: Exception, retry_number: int) -> float:
        if not isinstance(error, NotaryError) or retrier.gives_up_after(retry_number + 1):
            raise error
        delay = notary_retry_delay(retrier, error, retry_number, rate_limit_floor_seconds)
        if on_retry is not None:
            on_retry(error, delay)
        return delay

    return await retrier.run(call, decide)


def notary_retry_delay(retrier: Retrier, error: NotaryError, retry_number: int,
                       rate_limit_floor_seconds: float = RATE_LIMIT_FLOOR_SECONDS) -> float:
    """How long to wait before retrying a failed notary API call; re-raises a permanent error.

    After a 429 the wait is at least the server's Retry-After, or ``rate_limit_floor_seconds``.
    """
    if not error.transient:
        raise error
    floor = None
    if isinstance(error, RateLimited):
        floor = max(error.retry_after_seconds or 0.0, rate_limit_floor_seconds)
    return retrier.delay(retry_number, floor_seconds=floor)


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


def _quote_id(submission_id: str) -> str:
    if not submission_id or "/" in submission_id:
        raise ValueError(f"not a submission id: {submission_id!r}")
    return quote(submission_id, safe="-")


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: deep nesting
        return None


def _parse_json_file(handle: IO[bytes]) -> Any:
    handle.seek(0)
    try:
        return json.load(handle)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def _read_back(handle: IO[bytes], limit: int) -> bytes:
    handle.seek(0)
    return handle.read(limit)


async def read_capped(
    response: aiohttp.ClientResponse,
    cap: int,
    endpoint: str,
    sink: IO[bytes] | None,
    *,
    truncate: bool = False,
) -> bytes:
    """The body, at most ``cap`` bytes, else ``ResponseTooLarge`` (announced or actual size);
    with ``truncate``, the first ``cap`` bytes instead.

    With ``sink`` the body is written there (on a worker thread, 1 MiB at a time) instead.
    """
    too_large = response.content_length is not None and response.content_length > cap
    if too_large and not truncate:
        raise ResponseTooLarge(endpoint=endpoint, limit_bytes=cap)
    pending = bytearray()
    total = 0
    async for chunk in response.content.iter_chunked(_CHUNK):
        total += len(chunk)
        if total > cap:
            if not truncate:
                raise ResponseTooLarge(endpoint=endpoint, limit_bytes=cap)
            pending += chunk[: cap - (total - len(chunk))]
            break
        pending += chunk
        if sink is not None and len(pending) >= 16 * _CHUNK:
            await asyncio.to_thread(sink.write, bytes(pending))
            pending.clear()
    if sink is None:
        return bytes(pending)
    if pending:
        await asyncio.to_thread(sink.write, bytes(pending))
    return b""


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


def _one_line(text: str, limit: int) -> str:
    """Server-supplied text made safe to print: printable, one line, bounded."""
    cleaned = " ".join("".join(c if c.isprintable() else " " for c in text[: limit * 2]).split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def _first_error(raw: bytes) -> tuple[str, str]:
    """(code, detail) of the first JSON:API error in ``raw``, or ("", "") if there is none."""
    doc = _parse_json(raw)
    if not isinstance(doc, dict):
        return "", ""
    errors = doc.get("errors")
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return "", ""
    first = errors[0]
    code = _one_line(str(first.get("code") or ""), 80)
    title = _one_line(str(first.get("title") or ""), 200)
    detail = _one_line(str(first.get("detail") or ""), 400)
    if title and detail and title != detail and not detail.startswith(title):
        detail = f"{title}. {detail}"
    return code, (detail or title)


def _s3_error_code(body: bytes) -> str:
    match = re.search(rb"<Code>([^<]{1,64})</Code>", body)
    return _one_line(match.group(1).decode("ascii", "replace"), 64) if match else ""


def _describe(error: BaseException, what: str) -> str:
    if isinstance(error, TimeoutError):
        return f"timed out talking to {what}"
    text = str(error) or type(error).__name__
    # aiohttp messages may quote the URL; the only URLs with secrets are pre-signed ones.
    text = redact_urls_in(text)
    return f"{type(error).__name__}: {text}"
