"""The emulator's ticket lookup: tickets only for signatures it accepted, late on purpose.

When a submission is accepted the emulator reads the uploaded archive back (up to
``scan_limit_bytes``) and finds its signatures with its own decoder (``codesign``, independent
of the client's ``uploader.staple.identity``). The lookup then answers, per record:

* ``NOT_FOUND`` for ``propagation_seconds`` after acceptance (as CloudKit does while a ticket
  propagates), and for any record it never issued;
* ``THROTTLED`` with ``retryAfter`` while ``throttle_next`` > 0;
* the next code of ``record_errors`` while there is one (a fault knob: CloudKit's temporary
  per-record errors ``TRY_AGAIN_LATER``, ``INTERNAL_ERROR``, ``SERVICE_UNAVAILABLE``, or final
  ones such as ``ACCESS_DENIED``);
* the ticket afterwards.

A ticket is as large as a real one (``TICKET_BYTES``, from a published ``stapler -v`` log):
``s8ch``, version 1, the raw cdhash it vouches for, an HMAC of the record name (unforgeable by
the client, so a test can tell the emulator's ticket from anything else) and filler derived from
it. Answers go out in ``answer_pieces`` writes ``piece_pause_seconds`` apart, the way a real
~22 KB answer arrives over TLS. Answers are recorded in ``answers`` for tests.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import struct
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path

from aiohttp import web

from service.emulator.codesign import SignedCode, signed_code_in

log = logging.getLogger(__name__)

LOOKUP_PATH = "/database/1/com.apple.gk.ticket-delivery/production/public/records/lookup"
TICKET_BYTES = 16_177
# Studios ship 6-25 GB builds, and `notaryd demo` makes 1 GiB ones by default: the emulator
# tickets archives that large (spooled to a temp file while it reads them, then removed).
SCAN_LIMIT_BYTES = 32 << 30


class TicketDesk:
    def __init__(self, clock: Callable[[], float], *, propagation_seconds: float = 1.0,
                 scan_limit_bytes: int = SCAN_LIMIT_BYTES, answer_pieces: int = 4,
                 piece_pause_seconds: float = 0.05) -> None:
        self._clock = clock
        self.propagation_seconds = propagation_seconds
        self.scan_limit_bytes = scan_limit_bytes
        self.answer_pieces = answer_pieces
        self.piece_pause_seconds = piece_pause_seconds
        self.throttle_next = 0
        self.retry_after_seconds = 2
        self.record_errors: list[str] = []  # per-record error codes to answer next, in order
        self._secret = secrets.token_bytes(32)
        self._learned: dict[str, list[SignedCode]] = {}
        self._published: dict[str, float] = {}  # record name -> time it was accepted
        self.answers: list[tuple[str, str]] = []  # (record name, "ticket" | error code)

    def ticket_for(self, record_name: str) -> bytes:
        """The ticket this desk issues for ``record_name`` ("2/<digest type>/<cdhash hex>")."""
        cdhash = bytes.fromhex(record_name.rsplit("/", 1)[1])
        mac = hmac.new(self._secret, record_name.encode(), hashlib.sha256).digest()
        head = b"s8ch" + struct.pack(">I", 1) + cdhash + mac
        filler = hashlib.shake_256(mac + self._secret).digest(TICKET_BYTES - len(head))
        return head + filler

    def issue(self, record_names: Iterable[str]) -> None:
        """Publish tickets for these records now (as if their submission was just accepted)."""
        for name in record_names:
            self._published[name] = self._clock()

    async def learn(self, submission_id: str, name: str,
                    chunks: AsyncIterator[bytes]) -> list[SignedCode]:
        """Spool the accepted archive (bounded); the signatures its tickets will be filed under."""
        try:
            found = await self._learn(name, chunks)
        except Exception as error:  # no ticket, but the verdict must still be given
            log.warning("%s: could not read the accepted upload back (%s); no ticket", name, error)
            found = []
        self._learned[submission_id] = found
        return found

    async def _learn(self, name: str, chunks: AsyncIterator[bytes]) -> list[SignedCode]:
        fd, spooled = tempfile.mkstemp(prefix="notary-emulator-", suffix=Path(name).suffix)
        try:
            size = 0
            with os.fdopen(fd, "wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.scan_limit_bytes:
                        log.info("%s: larger than %d bytes, no ticket", name, self.scan_limit_bytes)
                        return []
                    await asyncio.to_thread(out.write, chunk)
            return await asyncio.to_thread(signed_code_in, Path(spooled), name)
        finally:
            await asyncio.to_thread(Path(spooled).unlink, missing_ok=True)

    def publish(self, submission_id: str) -> None:
        self.issue(code.record_name for code in self._learned.pop(submission_id, []))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json(loads=json.loads)
            names = [str(r["recordName"]) for r in body["records"]][:100]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            return web.json_response({"serverErrorCode": "BAD_REQUEST",
                                      "reason": "expected {records: [{recordName}]}"}, status=400)
        records = []
        for name in names:
            records.append(self._record(name))
            self.answers.append((name, str(records[-1].get("serverErrorCode", "ticket"))))
        return await self._stream(request, json.dumps({"records": records}).encode())

    async def _stream(self, request: web.Request, body: bytes) -> web.StreamResponse:
        """``body`` in ``answer_pieces`` writes with pauses: a client must read to the end."""
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(body)
        await response.prepare(request)
        pieces = max(1, self.answer_pieces)
        step = -(-len(body) // pieces)
        for start in range(0, len(body), step):
            if start:
                await asyncio.sleep(self.piece_pause_seconds)
            await response.write(body[start : start + step])
        await response.write_eof()
        return response

    def _record(self, name: str) -> dict[str, object]:
        if self.throttle_next > 0:
            self.throttle_next -= 1
            return {"recordName": name, "serverErrorCode": "THROTTLED",
                    "reason": "throttled", "retryAfter": self.retry_after_seconds}
        if self.record_errors:
            code = self.record_errors.pop(0)
            return {"recordName": name, "serverErrorCode": code, "reason": f"{code} (injected)"}
        accepted_at = self._published.get(name)
        if accepted_at is None or self._clock() < accepted_at + self.propagation_seconds:
            return {"recordName": name, "serverErrorCode": "NOT_FOUND",
                    "reason": "Record not found"}
        ticket = self.ticket_for(name)
        return {"recordName": name, "recordType": "DeveloperIDTicket", "fields": {
            "signedTicket": {"type": "BYTES", "value": base64.b64encode(ticket).decode()}}}
