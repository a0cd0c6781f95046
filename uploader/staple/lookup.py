"""The ticket lookup (Apple's CloudKit ``records/lookup``; no authentication), with patience.

``NOT_FOUND`` right after acceptance means the ticket has not propagated yet (users report up
to ~30 minutes): ask again with back-off (5 s doubling to 60 s) until ``max_wait_seconds``.
``THROTTLED`` waits its ``retryAfter``; network errors and 5xx are retried the same way. The
answer is read with a size cap and the ticket must start with ``s8ch``.
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

import aiohttp

from uploader.errors import NotarydError
from uploader.proxies import proxy_for_request
from uploader.staple.identity import TicketKey
from uploader.staple.tickets import MAX_TICKET_BYTES, TICKET_MAGIC

log = logging.getLogger(__name__)

DEFAULT_TICKET_URL = ("https://api.apple-cloudkit.com/database/1/com.apple.gk.ticket-delivery/"
                      "production/public/records/lookup")
MAX_ANSWER_BYTES = 4 * MAX_TICKET_BYTES
FIRST_DELAY_SECONDS = 5.0
MAX_DELAY_SECONDS = 60.0
ASK_TIMEOUT = aiohttp.ClientTimeout(total=60)


class TicketLookupError(NotarydError):
    """No ticket: the lookup refused for good, or it still answered NOT_FOUND at the deadline."""


class _Retry(Exception):
    def __init__(self, why: str, after: float | None = None) -> None:
        super().__init__(why)
        self.after = after


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
    """The ticket for ``key``; retries NOT_FOUND, THROTTLED and transient failures."""
    own = session is None
    http = session or aiohttp.ClientSession()
    deadline = clock() + max_wait_seconds
    delay = FIRST_DELAY_SECONDS
    try:
        while True:
            try:
                return await _ask(http, url, key)
            except _Retry as retry:
                wait = retry.after if retry.after is not None else delay
                if clock() + wait > deadline:
                    raise TicketLookupError(
                        f"no ticket for {key.record_name} after {max_wait_seconds:.0f} s "
                        f"(last answer: {retry}); the ticket may still be propagating: run "
                        "notaryd staple again later") from None
                log.info("ticket %s: %s; asking again in %.0f s", key.record_name, retry, wait)
                if on_retry is not None:
                    on_retry(str(retry), wait)
                await sleep(wait)
                delay = min(delay * 2, MAX_DELAY_SECONDS)
    finally:
        if own:
            await http.close()


async def _ask(http: aiohttp.ClientSession, url: str, key: TicketKey) -> bytes:
    body = {"records": [{"recordName": key.record_name}]}
    try:
        async with http.post(url, json=body, timeout=ASK_TIMEOUT,
                             proxy=await proxy_for_request(url)) as response:
            raw = await response.content.read(MAX_ANSWER_BYTES + 1)
            status = response.status
            retry_header = response.headers.get("Retry-After", "")
    except (aiohttp.ClientError, TimeoutError, OSError) as error:
        raise _Retry(f"network error: {error.__class__.__name__}") from None
    if len(raw) > MAX_ANSWER_BYTES:
        raise TicketLookupError(f"the ticket lookup at {url} answered more than "
                                f"{MAX_ANSWER_BYTES} bytes; check NOTARYD_TICKET_URL")
    try:
        answer: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        answer = None
    if status >= 500 or status == 429:
        header = float(retry_header) if retry_header.isdigit() else None
        raise _Retry(f"HTTP {status}", _retry_after(answer) or _capped(header))
    if not isinstance(answer, dict):
        raise TicketLookupError(f"the ticket lookup at {url} answered HTTP {status} without "
                                "JSON; check NOTARYD_TICKET_URL")
    records = answer.get("records")
    record = records[0] if isinstance(records, list) and records else answer
    if not isinstance(record, dict):
        raise TicketLookupError(f"the ticket lookup at {url} answered an unexpected document")
    code = record.get("serverErrorCode")
    if code == "NOT_FOUND":
        raise _Retry("NOT_FOUND (not propagated yet)")
    if code == "THROTTLED":
        raise _Retry("THROTTLED", _retry_after(record) or _retry_after(answer))
    if code is not None:
        raise TicketLookupError(f"the ticket lookup refused {key.record_name}: {code} "
                                f"({str(record.get('reason', ''))[:200]})")
    return _ticket_from(record, key)


def _ticket_from(record: dict[str, Any], key: TicketKey) -> bytes:
    field = (record.get("fields") or {}).get("signedTicket") or {}
    value = field.get("value") if isinstance(field, dict) else None
    try:
        ticket = base64.b64decode(str(value), validate=True) if value else b""
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
