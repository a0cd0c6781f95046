"""The ticket lookup (Apple's CloudKit ``records/lookup``; no authentication), with patience.

``NOT_FOUND`` right after acceptance means the ticket has not propagated yet (users report up
to ~30 minutes): ask again with back-off (``PATIENCE``: 5 s doubling to 60 s, on the project's
``Retrier``) until ``max_wait_seconds``.
CloudKit's temporary per-record errors (``TEMPORARY_CODES``) are retried the same way,
``THROTTLED`` after its ``retryAfter``; 5xx and 429 too. Every other per-record error (bad
request, access denied...) cannot change by asking again and ends the lookup at once.

A host that cannot be reached is not propagation: after ``UNREACHABLE_SECONDS`` of nothing but
network errors the lookup says it cannot reach the ticket service (naming the proxy configured
for it, if any). The answer (~22 KB for a real ticket, arriving in pieces) is read to its end
under a cap; the ticket must start with ``s8ch``. Redirects are followed only to Apple's own
hosts or to the host of the configured URL.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp

from uploader.errors import NotarydError
from uploader.notary.client import read_capped
from uploader.notary.errors import ResponseTooLarge
from uploader.proxies import proxy_for, proxy_for_request
from uploader.redaction import redact_url
from uploader.retry import Retrier, RetryPolicy
from uploader.staple.identity import TicketKey
from uploader.staple.tickets import MAX_TICKET_BYTES, TICKET_MAGIC

log = logging.getLogger(__name__)

MAX_ANSWER_BYTES = 4 * MAX_TICKET_BYTES
FIRST_DELAY_SECONDS = 5.0
MAX_DELAY_SECONDS = 60.0
# The back-off between asks (5, 10, 20, 40, 60, 60 ... s); no attempt cap: the deadline ends it.
PATIENCE = RetryPolicy(initial_delay_seconds=FIRST_DELAY_SECONDS,
                       throttled_initial_delay_seconds=FIRST_DELAY_SECONDS,
                       max_delay_seconds=MAX_DELAY_SECONDS, multiplier=2.0)
UNREACHABLE_SECONDS = 120.0
ASK_TIMEOUT = aiohttp.ClientTimeout(total=60)
MAX_REDIRECTS = 5
# CloudKit's per-record (and top-level) errors that asking again later can clear.
TEMPORARY_CODES = frozenset({"TRY_AGAIN_LATER", "INTERNAL_ERROR", "THROTTLED",
                             "SERVICE_UNAVAILABLE"})
APPLE_DOMAINS = ("apple.com", "apple-cloudkit.com")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class TicketLookupError(NotarydError):
    """No ticket: the lookup refused for good, or it still answered NOT_FOUND at the deadline."""


class _Retry(Exception):
    def __init__(self, why: str, after: float | None = None, *, unreachable: bool = False) -> None:
        super().__init__(why)
        self.after = after
        self.unreachable = unreachable


async def lookup_ticket(
    url: str,
    key: TicketKey,
    *,
    session: aiohttp.ClientSession | None = None,
    max_wait_seconds: float = 1800.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
    on_retry: Callable[[str, float], None] | None = None,
) -> bytes:
    """The ticket for ``key``; retries NOT_FOUND, temporary errors and network failures."""
    own = session is None
    http = session or aiohttp.ClientSession()
    deadline = clock() + max_wait_seconds
    unreachable_since: float | None = None
    retrier = Retrier(PATIENCE, sleep)

    def decide(error: Exception, retry_number: int) -> float:
        nonlocal unreachable_since
        if not isinstance(error, _Retry):
            raise error
        now = clock()
        if not error.unreachable:
            unreachable_since = None
        elif unreachable_since is None:
            unreachable_since = now
        # Not jittered: one client asking for one record is no herd to spread.
        wait = error.after if error.after is not None else PATIENCE.cap(retry_number)
        if unreachable_since is not None and (
                now + wait > deadline or now + wait - unreachable_since > UNREACHABLE_SECONDS):
            raise TicketLookupError(_unreachable(url, str(error))) from None
        if now + wait > deadline:
            raise TicketLookupError(
                f"no ticket for {key.record_name} after {max_wait_seconds:.0f} s "
                f"(last answer: {error}); the ticket may still be propagating: run "
                "notaryd staple again later") from None
        log.info("ticket %s: %s; asking again in %.0f s", key.record_name, error, wait)
        if on_retry is not None:
            on_retry(str(error), wait)
        return wait

    try:
        return await retrier.run(lambda: _ask(http, url, key), decide)
    finally:
        if own:
            await http.close()


def _unreachable(url: str, cause: str) -> str:
    text = f"cannot reach the ticket service at {redact_url(url)} ({cause})"
    if proxy := proxy_for(url):
        text += f"; the environment configures the proxy {redact_url(proxy)} for it"
    return (text + "; this is a network problem, not ticket propagation: check the network, "
            "the proxy settings and NOTARYD_TICKET_URL, then run notaryd staple again")


async def _ask(http: aiohttp.ClientSession, url: str, key: TicketKey) -> bytes:
    body = {"records": [{"recordName": key.record_name}]}
    target = url
    try:
        for _ in range(MAX_REDIRECTS + 1):
            async with http.post(target, json=body, timeout=ASK_TIMEOUT, allow_redirects=False,
                                 proxy=await proxy_for_request(target)) as response:
                location = response.headers.get("Location")
                if response.status in _REDIRECTS and location:
                    target = _redirect_target(url, target, location)
                    continue
                raw = await read_capped(response, MAX_ANSWER_BYTES, "ticket lookup", None)
                return _ticket_in(url, key, response.status, raw,
                                  response.headers.get("Retry-After", ""))
    except ResponseTooLarge:
        raise TicketLookupError(f"the ticket lookup at {redact_url(url)} answered more than "
                                f"{MAX_ANSWER_BYTES} bytes; check NOTARYD_TICKET_URL") from None
    except aiohttp.ClientConnectionError as error:
        raise _Retry(f"{error.__class__.__name__}: {_cause(error)}", unreachable=True) from None
    except (aiohttp.ClientError, TimeoutError, OSError) as error:
        unreachable = isinstance(error, TimeoutError | OSError)
        raise _Retry(f"network error: {error.__class__.__name__}",
                     unreachable=unreachable) from None
    raise TicketLookupError(f"the ticket lookup at {redact_url(url)} redirected more than "
                            f"{MAX_REDIRECTS} times; check NOTARYD_TICKET_URL")


def _cause(error: BaseException) -> str:
    inner = getattr(error, "os_error", None) or error.__cause__
    return str(getattr(inner, "strerror", None) or inner or error)[:200]


def _redirect_target(configured: str, current: str, location: str) -> str:
    """Where a redirect leads, if that is one of Apple's hosts or the configured URL's host."""
    target = urljoin(current, location)
    there, home = urlsplit(target), urlsplit(configured)
    host = (there.hostname or "").lower()
    apple = there.scheme == "https" and any(
        host == domain or host.endswith("." + domain) for domain in APPLE_DOMAINS)
    configured_host = (there.scheme, host, there.port) == (home.scheme, home.hostname, home.port)
    if not (apple or configured_host):
        raise TicketLookupError(
            f"the ticket lookup at {redact_url(configured)} redirected to {redact_url(target)}, "
            "which is neither Apple's nor NOTARYD_TICKET_URL's host; not followed")
    return target


def _ticket_in(url: str, key: TicketKey, status: int, raw: bytes, retry_header: str) -> bytes:
    try:
        answer: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        answer = None
    if status >= 500 or status == 429:
        header = float(retry_header) if retry_header.isdigit() else None
        raise _Retry(f"HTTP {status}", _retry_after(answer) or _capped(header))
    if not isinstance(answer, dict):
        raise TicketLookupError(f"the ticket lookup at {redact_url(url)} answered HTTP {status} "
                                "without JSON; check NOTARYD_TICKET_URL")
    records = answer.get("records")
    record = records[0] if isinstance(records, list) and records else answer
    if not isinstance(record, dict):
        raise TicketLookupError(f"the ticket lookup at {redact_url(url)} answered an "
                                "unexpected document; check NOTARYD_TICKET_URL")
    raw_code = record.get("serverErrorCode")
    code = None if raw_code is None else str(raw_code)[:60]
    if code == "NOT_FOUND":
        raise _Retry("NOT_FOUND (not propagated yet)")
    if code in TEMPORARY_CODES:
        raise _Retry(f"{code} (temporary)", _retry_after(record) or _retry_after(answer))
    if code is not None:
        raise TicketLookupError(f"the ticket lookup refused {key.record_name}: {code} "
                                f"({str(record.get('reason', ''))[:200]})")
    return _ticket_from(record, key)


def _ticket_from(record: dict[str, Any], key: TicketKey) -> bytes:
    fields = record.get("fields")
    field = fields.get("signedTicket") if isinstance(fields, dict) else None
    value = field.get("value") if isinstance(field, dict) else None
    try:
        ticket = base64.b64decode(value, validate=True) if isinstance(value, str) else b""
    except (binascii.Error, ValueError):
        ticket = b""
    if not ticket.startswith(TICKET_MAGIC) or len(ticket) > MAX_TICKET_BYTES:
        raise TicketLookupError(f"the ticket lookup's answer for {key.record_name} holds no "
                                "valid ticket (expected s8ch data)")
    return ticket


def _retry_after(document: Any) -> float | None:
    """CloudKit's ``retryAfter`` (seconds) from a record or the whole answer."""
    return _capped(document.get("retryAfter")) if isinstance(document, dict) else None


def _capped(value: object) -> float | None:
    """A server-requested wait, ignored when absurd (negative, or over an hour)."""
    if isinstance(value, int | float) and 0 <= value <= 3600:
        return float(value)
    return None
