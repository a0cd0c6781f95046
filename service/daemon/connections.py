"""Keeping the control API answerable, and the jobs alive, when a local user floods it.

aiohttp has no header-read timeout and no connection cap: 4,200 half-sent requests used every
descriptor the daemon had, and a job then failed to open its log file. So the listener is
guarded here, below aiohttp:

* **A cap on connections**, far under the descriptor limit (``connection_cap``): the rest is
  reserved for the jobs (SQLite, logs, S3 connections), so a flood can delay an answer but never
  fail a job.
* **A deadline for every request head**: a connection must finish its request head within
  ``header_timeout`` seconds of being accepted, or of its previous response (an idle keep-alive
  connection is treated alike); otherwise it is dropped.
* **When full, the longest-waiting connection without a request in progress is dropped** to make
  room: a slowloris connection is always such a connection, a client that sends its request at
  once never is for long. Only when every connection is busy in a handler is the newcomer refused.
* **Malformed HTTP gets a JSON 4xx**, like every other error of the API.

A request is "in progress" from the moment aiohttp hands it to the application (the
``middleware`` below marks it) until its handler returns; body reads have their own timeout in
``api.py``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger(__name__)

HEADER_TIMEOUT_SECONDS = 10.0
MAX_CONNECTIONS = 1024
MIN_CONNECTIONS = 16
# Descriptors never handed to API connections: the jobs' database, logs, sockets to S3 and to
# the notary service (a job needs a few dozen; the rest is margin).
JOB_DESCRIPTORS = 1024
LISTEN_BACKLOG = 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def connection_cap(descriptor_limit: int) -> int:
    """API connections allowed under RLIMIT_NOFILE ``descriptor_limit``: at most half of what the
    jobs do not need, so most descriptors stay free even under a flood."""
    reserve = min(JOB_DESCRIPTORS, descriptor_limit // 2)
    return max(MIN_CONNECTIONS, min(MAX_CONNECTIONS, (descriptor_limit - reserve) // 2))


class ConnectionGuard:
    def __init__(self, max_connections: int, header_timeout: float = HEADER_TIMEOUT_SECONDS) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections}")
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self._open: dict[asyncio.BaseTransport, _Connection] = {}
        self._waiting: OrderedDict[_Connection, None] = OrderedDict()  # longest waiting first
        # counts, for the log and the tests
        self.accepted = 0
        self.evicted = 0
        self.timed_out = 0
        self.refused = 0

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def protocol_factory(self, server: web.Server) -> Callable[[], asyncio.Protocol]:
        loop = asyncio.get_running_loop()

        # as web.Server would make it, with no access log (AppRunner's access_log=None)
        options: dict[str, Any] = {
            "access_log": None, "lingering_time": 1.0, "keepalive_timeout": self.header_timeout,
        }

        def make() -> asyncio.Protocol:
            return _Connection(self, _JsonErrorRequestHandler(server, loop=loop, **options))

        return make

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        connection = self._open.get(request.transport) if request.transport is not None else None
        if connection is None:
            return await handler(request)
        connection.busy += 1
        self._waiting.pop(connection, None)
        connection.cancel_deadline()
        try:
            return await handler(request)
        finally:
            connection.busy -= 1
            if connection.busy == 0 and connection.transport is not None:
                self._wait(connection)

    # -- bookkeeping (called by _Connection) ---------------------------------------------------

    def _admit(self, connection: _Connection, transport: asyncio.BaseTransport) -> bool:
        if len(self._open) >= self.max_connections:
            if not self._waiting:
                self.refused += 1
                return False  # every connection is busy in a handler: refuse the newcomer
            victim, _ = self._waiting.popitem(last=False)
            self.evicted += 1
            victim.drop()
        self.accepted += 1
        self._open[transport] = connection
        self._wait(connection)
        return True

    def _wait(self, connection: _Connection) -> None:
        """The connection now owes a request head, within the header timeout."""
        self._waiting[connection] = None
        connection.set_deadline(self.header_timeout)

    def _expired(self, connection: _Connection) -> None:
        if connection in self._waiting:
            self.timed_out += 1
            self._waiting.pop(connection, None)
            connection.drop()

    def _forget(self, connection: _Connection, transport: asyncio.BaseTransport) -> None:
        self._waiting.pop(connection, None)
        if self._open.get(transport) is connection:
            del self._open[transport]

    def __repr__(self) -> str:
        return (
            f"ConnectionGuard(open={len(self._open)}/{self.max_connections}, accepted={self.accepted}, "
            f"evicted={self.evicted}, timed_out={self.timed_out}, refused={self.refused})"
        )


class _Connection(asyncio.Protocol):
    """aiohttp's protocol for one connection, with the guard's accounting around it."""

    def __init__(self, guard: ConnectionGuard, inner: RequestHandler) -> None:
        self._guard = guard
        self._inner = inner
        self.transport: asyncio.Transport | None = None
        self._admitted = False
        self._deadline: asyncio.TimerHandle | None = None
        self.busy = 0  # requests of this connection inside a handler

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if not self._guard._admit(self, transport):
            self.transport.abort()  # aiohttp never sees it
            return
        self._admitted = True
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._admitted:
            self._inner.data_received(data)

    def eof_received(self) -> None:
        if self._admitted:
            self._inner.eof_received()  # returns nothing: asyncio closes the transport

    def pause_writing(self) -> None:
        if self._admitted:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._admitted:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.cancel_deadline()
        if self.transport is not None:
            self._guard._forget(self, self.transport)
        self.transport = None
        if self._admitted:
            self._admitted = False
            self._inner.connection_lost(exc)

    def set_deadline(self, seconds: float) -> None:
        self.cancel_deadline()
        self._deadline = asyncio.get_running_loop().call_later(seconds, self._guard._expired, self)

    def cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def drop(self) -> None:
        """Close at once (RST): the descriptor is free now, not after a polite goodbye."""
        self.cancel_deadline()
        if self.transport is not None:
            self.transport.abort()


class _JsonErrorRequestHandler(RequestHandler):
    """aiohttp's protocol, answering requests it cannot parse with the API's JSON error shape."""

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            return super().handle_error(request, status, exc, message)
        if request.writer.output_size > 0:
            raise ConnectionError("the response was already started; cannot send an error")
        reason = (message or (str(exc) if exc else "") or "malformed request").splitlines()[0][:200]
        response = web.json_response(
            {"error": f"malformed HTTP request: {reason}", "hint": "send plain HTTP/1.1 with a Host header"},
            status=status,
        )
        response.force_close()
        return response


class GuardedTCPSite(web.TCPSite):
    """``web.TCPSite`` whose connections go through a ``ConnectionGuard``."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, guard: ConnectionGuard,
                 **kwargs: Any) -> None:
        super().__init__(runner, host, port, backlog=LISTEN_BACKLOG, **kwargs)
        self._guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with the runner (skips TCPSite's)
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self._guard.protocol_factory(server),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
        )
        self._bound_port = self._server.sockets[0].getsockname()[1] if self._server.sockets else self._port
