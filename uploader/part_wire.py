"""UploadPart bodies on blocking sockets: one worker thread per part in flight.

Why (measured on the 2-core machine, 1 GiB over HTTPS, 8 parts of 16 MiB in flight): through
aiohttp every part body passes uvloop's memory-BIO TLS (each record copied into the BIO,
zero-filled as it grows, copied out again) and every drain of the socket is an event-loop round
trip in Python, so the cost grew with the link's slowness: ``notaryd upload`` took 2.3 CPU-s
sent straight to the sink and 3.0 through a 200 Mbit/s, 50 ms link. A thread blocked in
``sendall`` on an ``ssl.SSLSocket`` encrypts straight into the kernel and costs only the
kernel's wake-up; on this wire the same uploads take 2.1-2.2 and 2.3-2.5 CPU-s (of which
~0.7 is the process's start-up). Eight bare threads doing only that (read, CRC64NVME, send)
take 0.95 and 1.07: the floor of this way of sending.

Only the transport changes. The request arrives here signed by botocore (SigV4 with
UNSIGNED-PAYLOAD, the part's checksum header, ``Expect: 100-continue``) as aiobotocore's HTTP
session received it (``s3client.WireTrackingSession.send``), and the answer goes back as an
``AioAWSResponse`` for botocore to parse, so S3's errors are read and classified where they
always were; failures of the connection are raised as the botocore exceptions aiobotocore
raises for aiohttp's. HTTP/1.1 framing is h11's. Proxies: ``http://`` proxies, by CONNECT for
https origins and absolute-form requests for http ones, with botocore's proxy settings
(``HTTPS_PROXY``, ``NO_PROXY``, credentials in the URL). What this does not serve (an https
proxy, a client certificate, a bandwidth cap whose pacing is async) stays on aiohttp.

Bounds: every connect, handshake and read waits at most the client's timeouts; an answer is
read to its end but at most ``MAX_ANSWER_BYTES``; redirects are not followed (an UploadPart
answer is the answer). The engine's stall watchdog cancels a part by cancelling the request:
the socket is shut down, which ends the thread's ``sendall`` at once, and the request returns
only once the thread has let go of the part's buffer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import h11
from aiobotocore.awsrequest import AioAWSResponse
from botocore import exceptions as boto_exc
from botocore.httpsession import mask_proxy_url

from uploader.part_body import PartStream, socket_probe, tune_socket

# An UploadPart answer is empty or a short XML error; anything longer is not S3's.
MAX_ANSWER_BYTES = 1024 * 1024
# The head of an answer (S3's, or a proxy's to CONNECT).
MAX_HEAD_BYTES = 64 * 1024
# An idle kept-alive connection is reused within this long (aiobotocore keeps aiohttp's at 12 s).
IDLE_SECONDS = 12.0
# How often a thread waiting for the answer looks at the wire: bytes still leaving the
# kernel are activity, so the read timeout counts from the last byte that left.
LOOK_SECONDS = 1.0
# After the socket is shut down, the thread notices at its next system call.
LET_GO_SECONDS = 10.0


@dataclass(frozen=True)
class Route:
    """Where a connection goes: the origin, and the http proxy in front of it (if any)."""

    scheme: str
    host: str
    port: int
    proxy_url: str | None = None

    @classmethod
    def of(cls, url: str, proxy_url: str | None) -> Route:
        parts = urlsplit(url)
        default = 443 if parts.scheme == "https" else 80
        return cls(parts.scheme, parts.hostname or "", parts.port or default, proxy_url)


def serves(url: str, proxy_url: str | None, body: object) -> bool:
    """True if the wire can carry this request: a part body without async pacing, to an http(s)
    origin, direct or through an ``http://`` proxy."""
    return (
        isinstance(body, PartStream) and not body.paced
        and urlsplit(url).scheme in ("http", "https")
        and (proxy_url is None or urlsplit(proxy_url).scheme == "http")
    )


class _Answer:
    """The answer's body, already read (aiobotocore awaits ``raw.read()``)."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    async def read(self) -> bytes:
        return self._body


class _Connection:
    """One socket (TLS inside for https) and its HTTP/1.1 state; used by one thread at a time."""

    def __init__(self, sock: socket.socket, route: Route) -> None:
        self.sock = sock
        self.route = route
        self.http = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)
        self.idle_since = time.monotonic()
        self.aborted = False

    def abort(self) -> None:
        """End whatever the thread is doing on this socket (from any thread)."""
        self.aborted = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.sock.close()

    def dropped(self) -> bool:
        """True if an idle connection was closed (or written to) by the server meanwhile."""
        if time.monotonic() - self.idle_since > IDLE_SECONDS:
            return True
        poller = select.poll()  # not select(): no limit on the descriptor's number
        poller.register(self.sock, select.POLLIN)
        return bool(poller.poll(0))

    def reusable(self) -> bool:
        return (not self.aborted and self.http.our_state is h11.DONE
                and self.http.their_state is h11.DONE)

    def exchange(self, method: str, target: str, headers: list[tuple[bytes, bytes]],
                 body: PartStream, read_timeout: float) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Send the request and its body, read the answer (blocking: run it on a worker thread).

        With ``Expect: 100-continue`` the body waits for S3's go-ahead; an early final answer
        (503 SlowDown, 403) is the answer and the body is never sent.
        """
        self.sock.sendall(self.http.send(h11.Request(method=method, target=target, headers=headers)))
        probe = socket_probe(self.sock)
        expecting = any(k.lower() == b"expect" for k, _ in headers)
        event = self._next(read_timeout, None) if expecting else None
        if isinstance(event, h11.Response):
            return self._rest(event, read_timeout, None)

        def send(piece: memoryview) -> None:
            # h11 hands the slice back untouched (no copy): its type says bytes, any buffer works
            data = h11.Data(data=piece)  # type: ignore[arg-type]
            for chunk in self.http.send_with_data_passthrough(data) or ():
                self.sock.sendall(chunk)

        # The body goes in blocking mode. Python's ssl applies a socket timeout to each whole
        # write (a 1 MiB slice), which on a slow link would cut bytes that are moving, and with
        # a timeout each full socket buffer costs a poll and a round of the GIL; blocking, a
        # slice is one call. The stall watchdog, which sees the wire byte by byte, ends a body
        # that stops moving by shutting the socket down (``abort``).
        self.sock.settimeout(None)
        try:
            body.write_blocking(send, probe)
            self.sock.sendall(self.http.send(h11.EndOfMessage()))
        except OSError:
            # S3 may answer in the middle of a body (400 RequestTimeout) and close: its answer,
            # when it arrived, says more than the broken pipe.
            answer = self._answer_after_failure(read_timeout)
            if answer is None:
                raise
            return answer
        event = self._next(read_timeout, body)
        while isinstance(event, h11.InformationalResponse):
            event = self._next(read_timeout, body)
        assert isinstance(event, h11.Response)
        return self._rest(event, read_timeout, body)

    def _answer_after_failure(self, read_timeout: float,
                              ) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
        """The answer the server sent before the connection broke, if one can be read."""
        try:
            event = self._next(min(read_timeout, LOOK_SECONDS), None)
            while isinstance(event, h11.InformationalResponse):
                event = self._next(min(read_timeout, LOOK_SECONDS), None)
            if isinstance(event, h11.Response):
                return self._rest(event, min(read_timeout, LOOK_SECONDS), None)
        except (OSError, h11.ProtocolError, _Unreadable):
            pass
        return None

    def _rest(self, head: h11.Response, read_timeout: float, body: PartStream | None,
              ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """The answer's body after its head, to its end and at most ``MAX_ANSWER_BYTES``."""
        data = bytearray()
        while not isinstance(event := self._next(read_timeout, body), h11.EndOfMessage):
            if isinstance(event, h11.Data):
                data += event.data
                if len(data) > MAX_ANSWER_BYTES:
                    raise _Unreadable(f"an UploadPart answer over {MAX_ANSWER_BYTES} bytes")
        return head.status_code, list(head.headers.raw_items()), bytes(data)

    def _next(self, read_timeout: float, body: PartStream | None) -> h11.Event:
        """The next event of the answer; bytes still leaving for the server keep it waiting."""
        waited, look = 0.0, min(LOOK_SECONDS, read_timeout / 4)
        while (event := self.http.next_event()) is h11.NEED_DATA:
            self.sock.settimeout(look)
            try:
                data = self.sock.recv(64 * 1024)
            except TimeoutError:
                moving = body is not None and body.moved_within(look)
                waited = 0.0 if moving else waited + look
                if waited >= read_timeout:
                    raise
                continue
            self.http.receive_data(data)
            if not data:
                raise ConnectionResetError("the server closed the connection before answering")
        if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            raise ConnectionResetError("the server closed the connection before answering")
        assert isinstance(event, h11.Event)
        return event


class _Unreadable(Exception):
    """An answer that cannot be S3's (too long)."""


@dataclass
class WireSettings:
    """What the wire takes from aiobotocore's HTTP session: trust, timeouts, pool size."""

    ca_file: str | None  # None: the system's trust store
    verify: bool
    connect_timeout: float
    read_timeout: float
    connections: int


class PartWire:
    """Part bodies on blocking sockets, pooled per route, sent from worker threads. One loop."""

    def __init__(self, settings: WireSettings) -> None:
        self._settings = settings
        self._threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=settings.connections, thread_name_prefix="part-wire")
        self._idle: dict[Route, list[_Connection]] = {}
        self._tls: ssl.SSLContext | None = None

    def close(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def send(self, request: Any, proxy_url: str | None,
                   proxy_headers: dict[str, str]) -> AioAWSResponse:
        """Carry one UploadPart; its answer, or botocore's exception for what went wrong."""
        url = request.url
        route = Route.of(url, proxy_url)
        parts = urlsplit(url)
        target = url if proxy_url and route.scheme == "http" else (
            parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = [(_bytes(k), _bytes(v)) for k, v in request.headers.items()]
        headers.append((b"Accept-Encoding", b"identity"))
        if proxy_url and route.scheme == "http":
            headers += [(_bytes(k), _bytes(v)) for k, v in proxy_headers.items()]
        connection = self._take(route)
        abandoned = threading.Event()

        def run() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            nonlocal connection
            if connection is None:
                connection = self._connect(route, proxy_headers)
            if abandoned.is_set():  # cancelled while connecting: the body is not ours to send
                connection.close()
                raise _Abandoned()
            return connection.exchange(request.method, target, headers, request.body,
                                       self._settings.read_timeout)

        job = asyncio.wrap_future(self._threads.submit(_translated, run, url, proxy_url))
        try:
            status, raw_headers, body = await asyncio.shield(job)
        except asyncio.CancelledError:
            abandoned.set()
            if connection is not None:
                connection.abort()
            await asyncio.wait({job}, timeout=LET_GO_SECONDS)  # the buffer is the engine's again
            if job.done() and not job.cancelled():
                job.exception()  # seen: the cancellation is what the caller hears
            _discard(connection)
            raise
        except BaseException:
            _discard(connection)
            raise
        assert connection is not None
        if connection.reusable():
            connection.http.start_next_cycle()
            connection.idle_since = time.monotonic()
            self._idle.setdefault(route, []).append(connection)
        else:
            connection.close()
        answer_headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw_headers}
        response = AioAWSResponse(url, status, answer_headers, _Answer(body))
        await response.content
        return response

    def _take(self, route: Route) -> _Connection | None:
        """An idle connection on ``route`` that the server has not dropped, or None."""
        idle = self._idle.get(route, [])
        while idle:
            connection = idle.pop()
            if not connection.dropped():
                return connection
            connection.close()
        return None

    def _connect(self, route: Route, proxy_headers: dict[str, str]) -> _Connection:
        """A new connection on ``route`` (blocking: on the worker thread)."""
        hop = urlsplit(route.proxy_url) if route.proxy_url else None
        address = (hop.hostname or "", hop.port or 80) if hop else (route.host, route.port)
        try:
            sock = socket.create_connection(address, timeout=self._settings.connect_timeout)
        except TimeoutError as exc:
            raise _ConnectTimedOut(f"no connection to {address[0]}:{address[1]}") from exc
        try:
            tune_socket(sock)
            if hop is not None and route.scheme == "https":
                _tunnel(sock, route, proxy_headers, self._settings.connect_timeout)
            if route.scheme == "https":
                sock = self._context().wrap_socket(sock, server_hostname=route.host)
            sock.settimeout(self._settings.read_timeout)
        except TimeoutError as exc:
            sock.close()
            raise _ConnectTimedOut(f"no answer from {address[0]}:{address[1]} while connecting") from exc
        except BaseException:
            sock.close()
            raise
        return _Connection(sock, route)

    def _context(self) -> ssl.SSLContext:
        if self._tls is None:
            if self._settings.verify:
                self._tls = ssl.create_default_context(cafile=self._settings.ca_file)
            else:
                self._tls = ssl.create_default_context()
                self._tls.check_hostname = False
                self._tls.verify_mode = ssl.CERT_NONE
        return self._tls


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


def _discard(connection: _Connection | None) -> None:
    if connection is not None:
        connection.close()


def _tunnel(sock: socket.socket, route: Route, proxy_headers: dict[str, str],
            timeout: float) -> None:
    """CONNECT through the http proxy on ``sock`` to the route's origin."""
    assert route.proxy_url is not None
    host = f"[{route.host}]" if ":" in route.host else route.host  # an IPv6 literal
    authority = f"{host}:{route.port}"
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    lines += [f"{k}: {v}" for k, v in proxy_headers.items()]
    sock.settimeout(timeout)
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(4096)
        if not data or len(head) + len(data) > MAX_HEAD_BYTES:
            raise ConnectionError("the proxy gave no complete answer to CONNECT")
        head += data
    status = head.split(b"\r\n", 1)[0].split(b" ")
    if len(status) < 2 or not status[1].startswith(b"2"):
        raise _ProxyRefused(f"the proxy answered CONNECT with {b' '.join(status[1:]).decode(errors='replace')}")
    if not head.endswith(b"\r\n\r\n"):
        raise ConnectionError("the proxy sent bytes after its answer to CONNECT")


class _ProxyRefused(ConnectionError):
    """The proxy refused the tunnel (407, 403, 502...)."""


class _ConnectTimedOut(Exception):
    """Connecting (TCP, the proxy's tunnel or the TLS handshake) took the connect timeout."""


class _Abandoned(Exception):
    """The request was cancelled while its connection was being made."""


def _translated(run: Callable[[], Any], url: str, proxy_url: str | None) -> Any:
    """Run ``run``; raise what went wrong as aiobotocore would for the same failure on aiohttp."""
    try:
        return run()
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError) as exc:
        raise boto_exc.ConnectionClosedError(endpoint_url=url, error=exc) from exc
    except ssl.SSLError as exc:  # the handshake: the certificate, the protocol
        raise boto_exc.SSLError(endpoint_url=url, error=exc) from exc
    except _ConnectTimedOut as exc:
        raise boto_exc.ConnectTimeoutError(endpoint_url=url, error=exc) from exc
    except _ProxyRefused as exc:
        raise boto_exc.ProxyConnectionError(proxy_url=mask_proxy_url(proxy_url or ""),
                                            error=exc) from exc
    except (h11.RemoteProtocolError, h11.LocalProtocolError, _Unreadable,
            ConnectionResetError, BrokenPipeError, ConnectionAbortedError) as exc:
        raise boto_exc.ConnectionClosedError(endpoint_url=url, error=exc) from exc
    except TimeoutError as exc:
        raise boto_exc.ReadTimeoutError(endpoint_url=url, error=exc) from exc
    except OSError as exc:
        raise boto_exc.EndpointConnectionError(endpoint_url=url, error=exc) from exc
