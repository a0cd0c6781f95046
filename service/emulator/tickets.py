"""The emulator's ticket lookup: tickets only for signatures it accepted, late on purpose.

When a submission is accepted the emulator reads the uploaded archive back (up to
``scan_limit_bytes``; a zip's ``*.app`` main executable, a flat .pkg's TOC checksum, a signed
.dmg's CodeDirectory) and learns its ticket keys with ``uploader.staple.identity``, the code the
client uses, so both sides agree by construction. The lookup then answers ``NOT_FOUND`` for
``propagation_seconds`` after acceptance (as Apple's CloudKit does while a ticket propagates),
``THROTTLED`` with ``retryAfter`` while ``throttle_next`` > 0, and the ticket afterwards.

A ticket is ``s8ch``, version 1, the cdhash it vouches for, and an HMAC of it (unforgeable by
the client, so a test can tell the emulator's ticket from anything else). Answers are recorded
in ``answers`` for tests.
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
import zipfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from uploader.errors import ConfigError
from uploader.staple.identity import TicketKey, app_ticket_key, dmg_ticket_key, pkg_ticket_key

log = logging.getLogger(__name__)

LOOKUP_PATH = "/database/1/com.apple.gk.ticket-delivery/production/public/records/lookup"
MAX_MEMBER_BYTES = 64 << 20


class TicketDesk:
    def __init__(self, clock: Callable[[], float], *, propagation_seconds: float = 1.0,
                 scan_limit_bytes: int = 512 << 20) -> None:
        self._clock = clock
        self.propagation_seconds = propagation_seconds
        self.scan_limit_bytes = scan_limit_bytes
        self.throttle_next = 0
        self.retry_after_seconds = 2
        self._secret = secrets.token_bytes(32)
        self._learned: dict[str, list[TicketKey]] = {}
        self._published: dict[str, float] = {}  # record name -> time it was accepted
        self.answers: list[tuple[str, str]] = []  # (record name, "ticket" | error code)

    def ticket_for(self, key: TicketKey) -> bytes:
        mac = hmac.new(self._secret, key.record_name.encode(), hashlib.sha256).digest()
        return b"s8ch" + struct.pack(">I", 1) + key.cdhash + mac

    async def learn(self, submission_id: str, name: str, chunks: AsyncIterator[bytes]) -> None:
        """Spool the accepted archive (bounded) and find the keys its tickets are filed under."""
        try:
            await self._learn(submission_id, name, chunks)
        except Exception as error:  # no ticket, but the verdict must still be given
            log.warning("%s: could not read the accepted upload back (%s); no ticket", name, error)

    async def _learn(self, submission_id: str, name: str, chunks: AsyncIterator[bytes]) -> None:
        fd, spooled = tempfile.mkstemp(prefix="notary-emulator-", suffix=Path(name).suffix)
        try:
            size = 0
            with os.fdopen(fd, "wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.scan_limit_bytes:
                        log.info("%s: larger than %d bytes, no ticket", name, self.scan_limit_bytes)
                        return
                    await asyncio.to_thread(out.write, chunk)
            keys = await asyncio.to_thread(keys_of_archive, Path(spooled), name)
        finally:
            await asyncio.to_thread(Path(spooled).unlink, missing_ok=True)
        self._learned[submission_id] = keys

    def publish(self, submission_id: str) -> None:
        for key in self._learned.pop(submission_id, []):
            self._published[key.record_name] = self._clock()

    async def handle(self, request: web.Request) -> web.Response:
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
        return web.json_response({"records": records})

    def _record(self, name: str) -> dict[str, object]:
        if self.throttle_next > 0:
            self.throttle_next -= 1
            return {"recordName": name, "serverErrorCode": "THROTTLED",
                    "reason": "throttled", "retryAfter": self.retry_after_seconds}
        accepted_at = self._published.get(name)
        if accepted_at is None or self._clock() < accepted_at + self.propagation_seconds:
            return {"recordName": name, "serverErrorCode": "NOT_FOUND",
                    "reason": "Record not found"}
        _, digest_type, hex_hash = name.split("/")
        ticket = self.ticket_for(TicketKey(int(digest_type), bytes.fromhex(hex_hash)))
        return {"recordName": name, "recordType": "DeveloperIDTicket", "fields": {
            "signedTicket": {"type": "BYTES", "value": base64.b64encode(ticket).decode()}}}


def keys_of_archive(path: Path, name: str) -> list[TicketKey]:
    """Ticket keys of the signatures in an uploaded archive; [] when it holds none."""
    suffix = Path(name).suffix.lower()
    try:
        if suffix == ".pkg":
            return [pkg_ticket_key(path)]
        if suffix == ".dmg":
            return [dmg_ticket_key(path)]
        if zipfile.is_zipfile(path):
            return _keys_of_zip(path)
    except (ConfigError, OSError, ValueError, zipfile.BadZipFile) as error:
        log.info("%s: no ticket (%s)", name, error)
    return []


def _keys_of_zip(path: Path) -> list[TicketKey]:
    """Each top-level bundle's key: extract its Info.plist and main executable only."""
    keys = []
    with zipfile.ZipFile(path) as archive, tempfile.TemporaryDirectory() as scratch:
        members = {info.filename: info for info in archive.infolist()}
        for plist in [m for m in members if m.count("/") == 2
                      and m.endswith(".app/Contents/Info.plist")]:
            bundle = plist.split("/")[0]
            wanted = [n for n in members if n == plist or n.startswith(f"{bundle}/Contents/MacOS/")]
            if any(members[n].file_size > MAX_MEMBER_BYTES or ".." in n.split("/")
                   for n in wanted):
                continue
            for member in wanted:
                archive.extract(member, scratch)
            try:
                keys.append(app_ticket_key(Path(scratch) / bundle))
            except ConfigError as error:
                log.info("%s: no ticket (%s)", bundle, error)
    return keys
