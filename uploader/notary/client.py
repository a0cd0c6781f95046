"""One-shot calls to the Notary REST API (``/notary/v2``): the transport.

What a request and its answer mean is ``uploader.notary.wire`` (no I/O: bodies and paths out,
``Answer`` in, typed results or ``NotaryError`` out). This module moves the bytes: one aiohttp
session (``notary_session``), Bearer tokens, timeouts, redirects, capped reads.

Answers are read strictly (see ``ResponseLimits`` and ``uploader.notary.url_policy``): every body
has a size cap (the log is streamed to a temporary file, never held as bytes), redirects are
followed only to URLs the policy allows (and, for calls that carry the Bearer token, only within
the API's own origin). The log is fetched from a pre-signed URL **without** the Bearer token (S3
refuses two authentication mechanisms at once); the URL's query carries credentials, so it only
ever appears in messages through ``redact_url``.

The calls do not retry: the pipeline owns retries (``with_retries`` below is the helper it uses,
on ``uploader.retry.Retrier``, the one retry core).
Every exchange emits ``NotaryRequestDone(endpoint, code)`` with the HTTP status or ``"error"``.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import IO, Any, TypeVar
from urllib.parse import urljoin, urlsplit

import aiohttp

from uploader.constants import RATE_LIMIT_FLOOR_SECONDS
from uploader.events import Emitter, Hook, NotaryRequestDone
from uploader.notary import wire
from uploader.notary.auth import TokenSource
from uploader.notary.errors import (
    NetworkError,
    NotaryError,
    RateLimited,
    ResponseTooLarge,
    UnsafeUrl,
)
from uploader.notary.url_policy import GuardedConnector, Resolver, UrlPolicy, resolve
from uploader.notary.wire import (  # re-exported: the results' home is the wire module
    NewSubmission,
    SubmissionStatus,
    parse_retry_after,
)
from uploader.proxies import proxy_for_request
from uploader.redaction import redact_url, redact_urls_in
from uploader.retry import Retrier, RetryPolicy

__all__ = [
    "NewSubmission", "NotaryClient", "RequestTimeouts", "ResponseLimits", "SubmissionStatus",
    "notary_retry_delay", "notary_session", "parse_retry_after", "read_capped", "redact_url",
    "with_retries",
]

T = TypeVar("T")


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

    async def __aexit__(self, *exc_info: object) -> None:
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
        body = wire.submit_body(name, sha256, webhook)
        issued_at = self._clock()
        return wire.new_submission(await self._call("submit", "POST", "/submissions", body),
                                   issued_at)

    async def status(self, submission_id: str) -> SubmissionStatus:
        """``GET /submissions/{id}``."""
        path = wire.submission_path(submission_id)
        return wire.submission_status(await self._call("status", "GET", path))

    async def log_url(self, submission_id: str) -> str:
        """``GET /submissions/{id}/logs``: the pre-signed log URL (404 until a verdict exists)."""
        path = wire.submission_path(submission_id, "/logs")
        url = wire.log_url(await self._call("logs", "GET", path))
        await self._urls.check(url, "logs")
        return url

    async def history(self) -> list[SubmissionStatus]:
        """``GET /submissions``: the team's 100 most recent submissions, newest first."""
        return wire.history(await self._call("history", "GET", "/submissions"))

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
            if answer.status != 200:
                body = await asyncio.to_thread(_read_back, spool, self._limits.error_bytes)
                raise wire.log_download_error(wire.Answer(answer.status, answer.headers, body))
            doc = await asyncio.to_thread(_parse_json_file, spool)
        finally:
            await asyncio.to_thread(spool.close)
        return wire.log_document(doc, answer.status)

    # -- plumbing ----------------------------------------------------------------------------

    async def _call(
        self, endpoint: str, method: str, path: str, body: bytes | None = None
    ) -> dict[str, Any]:
        headers = {"Authorization": self._tokens.authorization(), "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        answer = await self._exchange(
            endpoint, method, self.api_url + path, headers=headers, data=body,
            cap=self._limits.json_bytes, same_origin=True,
        )
        caller = wire.Caller(self._tokens.key_id, self._tokens.issuer_id,
                             self._tokens.key.mismatch_hint())
        return wire.document(endpoint, answer, caller, self._clock())

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
    ) -> wire.Answer:
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
                    answer = wire.Answer(status, response.headers, body)
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


def _parse_json_file(handle: IO[bytes]) -> Any:
    handle.seek(0)
    return wire.parse_json(handle.read())


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


def _describe(error: BaseException, what: str) -> str:
    if isinstance(error, TimeoutError):
        return f"timed out talking to {what}"
    text = str(error) or type(error).__name__
    # aiohttp messages may quote the URL; the only URLs with secrets are pre-signed ones.
    text = redact_urls_in(text)
    return f"{type(error).__name__}: {text}"
