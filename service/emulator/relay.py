"""The fault proxy's pass-through: one request to the upstream S3 server, its answer back.

Clients sign requests for the proxy's ``host:port``; the relay forwards method, raw path+query
and every end-to-end header untouched (the ``Host`` header included, so SigV4 signatures
verify upstream) and streams both bodies chunk by chunk: memory per request is bounded by
aiohttp's stream buffer (~64 KiB), never a whole part. Request bodies are read through the
bandwidth ``Throttle`` when one is set (responses are not shaped).

``Traffic`` counts what passes (thread-safe snapshots as ``ProxyStats``): requests by operation
and outcome, request-body bytes received from clients (what the client put on the wire),
bytes forwarded upstream, response-body bytes sent back.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout, DummyCookieJar, TCPConnector, web
from multidict import CIMultiDict
from yarl import URL

from service.emulator.tcp import reset_connection
from uploader.throttle import Throttle

CHUNK_BYTES = 256 * 1024

#: Hop-by-hop headers (RFC 9110 §7.6.1) are the connection's, not the message's; Expect is
#: answered by the proxy itself (and is not in SigV4's signed headers).
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
    }
)
# Headers aiohttp's client would add on its own; the upstream must see only the client's.
_NO_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")


@dataclass(frozen=True)
class ProxyStats:
    """A consistent snapshot of the proxy's counters."""

    operations: Mapping[str, int] = field(default_factory=dict)
    outcomes: Mapping[str, int] = field(default_factory=dict)
    request_body_bytes_received: int = 0
    part_body_bytes_received: int = 0  # of those, UploadPart bodies (no CreateMultipart/Complete XML)
    request_body_bytes_forwarded: int = 0
    response_body_bytes_sent: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "operations": dict(self.operations),
            "outcomes": dict(self.outcomes),
            "request_body_bytes_received": self.request_body_bytes_received,
            "part_body_bytes_received": self.part_body_bytes_received,
            "request_body_bytes_forwarded": self.request_body_bytes_forwarded,
            "response_body_bytes_sent": self.response_body_bytes_sent,
        }


class Traffic:
    """Mutable counters behind a lock (snapshots may be taken from another thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.operations: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.received = 0
        self.part_received = 0
        self.forwarded = 0
        self.sent = 0

    def add(
        self, *, received: int = 0, part_received: int = 0, forwarded: int = 0, sent: int = 0
    ) -> None:
        with self._lock:
            self.received += received
            self.part_received += part_received
            self.forwarded += forwarded
            self.sent += sent

    def count(self, operation: str | None = None, outcome: str | None = None) -> None:
        with self._lock:
            if operation is not None:
                self.operations[str(operation)] += 1
            if outcome is not None:
                self.outcomes[str(outcome)] += 1

    def snapshot(self) -> ProxyStats:
        with self._lock:
            return ProxyStats(
                operations=dict(self.operations),
                outcomes=dict(self.outcomes),
                request_body_bytes_received=self.received,
                part_body_bytes_received=self.part_received,
                request_body_bytes_forwarded=self.forwarded,
                response_body_bytes_sent=self.sent,
            )


class ClientGone(Exception):
    """The client closed its connection while we were reading its body or answering."""


class UpstreamUnreachable(Exception):
    """The upstream failed before any of its answer was sent: the proxy may still answer."""


def expects_continue(request: web.BaseRequest) -> bool:
    return request.headers.get("Expect", "").lower() == "100-continue"


class Relay:
    def __init__(self, upstream: URL, traffic: Traffic) -> None:
        self.upstream = upstream
        self.traffic = traffic
        self.throttle: Throttle | None = None
        self._session: ClientSession | None = None

    async def open(self) -> None:
        self._session = ClientSession(
            connector=TCPConnector(limit=0),
            timeout=ClientTimeout(total=None, sock_connect=10, sock_read=300),
            auto_decompress=False,
            cookie_jar=DummyCookieJar(),
        )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def send_continue(self, request: web.BaseRequest) -> None:
        if expects_continue(request) and request.writer is not None:
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    async def read_body(
        self, request: web.BaseRequest, limit: int | None = None
    ) -> AsyncIterator[bytes]:
        """The client's body in chunks, at most ``limit`` bytes, shaped by the bandwidth cap."""
        remaining = limit
        is_part = request.method == "PUT" and "partNumber" in request.query
        while remaining is None or remaining > 0:
            try:
                chunk = await request.content.readany()
            except (ConnectionError, asyncio.IncompleteReadError) as error:
                raise ClientGone from error
            if not chunk:
                if request.content.exception() is not None:
                    raise ClientGone
                return
            if remaining is not None:
                chunk = chunk[:remaining]
                remaining -= len(chunk)
            if self.throttle is not None:
                await self.throttle.acquire(len(chunk))
            self.traffic.add(received=len(chunk), part_received=len(chunk) if is_part else 0)
            yield chunk

    async def drain(self, request: web.BaseRequest, limit: int | None = None) -> None:
        async for _ in self.read_body(request, limit):
            pass

    def _upstream_headers(self, request: web.BaseRequest) -> CIMultiDict[str]:
        headers: CIMultiDict[str] = CIMultiDict()
        for name, value in request.headers.items():
            if name.lower() not in _HOP_BY_HOP:
                headers.add(name, value)
        return headers

    async def forward(
        self, request: web.BaseRequest, *, answer: bool = True
    ) -> web.StreamResponse | None:
        """Send the request upstream and stream the answer back (None: ``answer`` was False,
        the upstream's answer is read and dropped)."""
        assert self._session is not None
        await self.send_continue(request)
        # The raw path and query exactly as the client signed them: no re-quoting.
        url = URL(str(self.upstream.origin()) + request.raw_path, encoded=True)
        body = self._forwarded_body(request) if request.body_exists else None
        response: web.StreamResponse | None = None
        try:
            async with self._session.request(
                request.method,
                url,
                headers=self._upstream_headers(request),
                data=body,
                allow_redirects=False,
                skip_auto_headers=_NO_AUTO_HEADERS,
            ) as upstream:
                if not answer:
                    await upstream.read()
                    return None
                response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
                for name, value in upstream.headers.items():
                    if name.lower() not in _HOP_BY_HOP:
                        response.headers.add(name, value)
                await response.prepare(request)
                async for chunk in upstream.content.iter_chunked(CHUNK_BYTES):
                    await response.write(chunk)
                    self.traffic.add(sent=len(chunk))
                await response.write_eof()
        except ClientGone:
            raise
        except (ClientError, OSError) as error:
            client_gone = request.transport is None or request.transport.is_closing()
            if client_gone or response is not None:
                # Nothing sensible can be said any more: half an answer is already out.
                reset_connection(request)
                raise ClientGone from error
            raise UpstreamUnreachable from error
        return response

    async def _forwarded_body(self, request: web.BaseRequest) -> AsyncIterator[bytes]:
        async for chunk in self.read_body(request):
            yield chunk
            self.traffic.add(forwarded=len(chunk))
