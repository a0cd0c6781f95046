"""A real forward HTTP proxy on loopback that records what went through it.

It serves the two ways a client uses a proxy: ``CONNECT host:port`` for https (a byte tunnel it
cannot see into) and absolute-URI requests (``GET http://host:port/path``) for plain http, which
it forwards in origin form with ``Connection: close`` so that every request arrives as its own
connection and is recorded. ``hosts`` maps names to addresses: a DNS the test controls, so a
client can address a server on loopback by a name. With ``credentials`` it answers 407 unless
the request carries them as ``Proxy-Authorization: Basic``.

``ForwardProxy`` runs on the caller's loop; ``ForwardProxyThread`` on a loop of its own (for
tests that drive child processes). ``TlsFront`` puts TLS in front of a plain-HTTP server (the
emulator's S3), so that https traffic, and the proxy's CONNECT tunnels, can be tested on loopback.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

from service.emulator.background import LoopThread

_HEAD_CAP = 64 * 1024
_HEAD_SECONDS = 30.0
_CHUNK = 64 * 1024
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authorization",
                         "proxy-authenticate", "te", "trailer", "upgrade"})


@dataclass(frozen=True)
class Passage:
    method: str  # CONNECT for a tunnel
    target: str  # host:port as the client named it
    path: str  # "" for a tunnel


class _LoopbackServer:
    """A TCP server on 127.0.0.1 that owns its connections' tasks and ends them on ``stop``."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.port = 0

    async def _listen(self, context: ssl.SSLContext | None = None) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=context)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await asyncio.wait_for(self._server.wait_closed(), 10)
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._handle(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ValueError):
            pass  # the client or the server went away: nothing to record
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class ForwardProxy(_LoopbackServer):
    def __init__(self, *, hosts: Mapping[str, str] | None = None,
                 credentials: tuple[str, str] | None = None) -> None:
        super().__init__()
        self._hosts = dict(hosts or {})
        self._credentials = credentials
        self.passages: list[Passage] = []
        self.refused = 0  # requests without the right Proxy-Authorization

    @property
    def url(self) -> str:
        auth = ""
        if self._credentials:
            auth = f"{self._credentials[0]}:{self._credentials[1]}@"
        return f"http://{auth}127.0.0.1:{self.port}"

    def tunnels_to(self, target: str) -> int:
        return sum(1 for p in self.passages if p.method == "CONNECT" and p.target == target)

    def requests_to(self, target: str, path_prefix: str = "") -> int:
        return sum(1 for p in self.passages if p.method != "CONNECT" and p.target == target
                   and p.path.startswith(path_prefix))

    async def start(self) -> None:
        await self._listen()

    async def __aenter__(self) -> ForwardProxy:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    # -- one client connection ------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _HEAD_SECONDS)
        if len(head) > _HEAD_CAP:
            return
        request_line, *header_lines = head.decode("latin-1").split("\r\n")[:-2]
        method, target, version = request_line.split(" ", 2)
        headers = [line.split(":", 1) for line in header_lines if ":" in line]
        if not self._authorized(headers):
            self.refused += 1
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                         b'Proxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n'
                         b"Connection: close\r\n\r\n")
            await writer.drain()
            return
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            upstream_reader, upstream_writer = await self._connect(host, int(port))
            self.passages.append(Passage("CONNECT", target, ""))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await self._relay(reader, writer, upstream_reader, upstream_writer)
            return
        url = urlsplit(target)
        if url.scheme != "http" or not url.hostname:
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            return
        port = url.port or 80
        origin = (url.path or "/") + (f"?{url.query}" if url.query else "")
        upstream_reader, upstream_writer = await self._connect(url.hostname, port)
        self.passages.append(Passage(method, f"{url.hostname}:{port}", origin))
        kept = "".join(f"{name}:{value}\r\n" for name, value in headers
                       if name.strip().lower() not in _HOP_BY_HOP)
        upstream_writer.write(f"{method} {origin} {version}\r\n{kept}Connection: close\r\n\r\n"
                              .encode("latin-1"))
        await self._relay(reader, writer, upstream_reader, upstream_writer, close_answer=True)

    def _authorized(self, headers: list[list[str]]) -> bool:
        if self._credentials is None:
            return True
        expected = base64.b64encode(":".join(self._credentials).encode()).decode()
        return any(name.strip().lower() == "proxy-authorization"
                   and value.strip() == f"Basic {expected}" for name, value in headers)

    async def _connect(self, host: str, port: int) -> tuple[asyncio.StreamReader,
                                                             asyncio.StreamWriter]:
        address = self._hosts.get(host.strip("[]").lower(), host.strip("[]"))
        return await asyncio.wait_for(asyncio.open_connection(address, port), 10)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     upstream_reader: asyncio.StreamReader, upstream_writer: asyncio.StreamWriter,
                     *, close_answer: bool = False) -> None:
        """Bytes both ways until the server's side ends (it closes after one answer)."""

        async def answer() -> None:
            if close_answer:  # interim 1xx heads pass as they are; the final one says close
                while True:
                    head = await upstream_reader.readuntil(b"\r\n\r\n")
                    if not head.startswith(b"HTTP/1.1 1") or head.startswith(b"HTTP/1.1 101"):
                        break
                    writer.write(head)
                lines = [line for line in head.split(b"\r\n")[:-2]
                         if not line.lower().startswith((b"connection:", b"keep-alive:"))]
                writer.write(b"\r\n".join([*lines, b"Connection: close", b"", b""]))
            await _pipe(upstream_reader, writer)

        try:
            async with asyncio.TaskGroup() as group:
                sending = group.create_task(_pipe(reader, upstream_writer))
                await answer()
                sending.cancel()
        finally:
            upstream_writer.close()
            with contextlib.suppress(OSError):
                await upstream_writer.wait_closed()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Copy until ``source`` ends (or either side breaks), then pass the end on."""
    with contextlib.suppress(OSError):
        while chunk := await source.read(_CHUNK):
            sink.write(chunk)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()


class TlsFront(_LoopbackServer):
    """TLS on a loopback port, relayed as plain bytes to ``upstream_port``; counts connections."""

    def __init__(self, upstream_port: int, cert_chain: Path, key: Path) -> None:
        super().__init__()
        self._upstream_port = upstream_port
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(cert_chain, key)
        self.accepted = 0

    async def start(self) -> None:
        await self._listen(self._context)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        upstream_reader, upstream_writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", self._upstream_port), 10)
        sending = asyncio.create_task(_pipe(reader, upstream_writer))
        try:
            await _pipe(upstream_reader, writer)  # the server's end ends the connection
        finally:
            sending.cancel()
            await asyncio.gather(sending, return_exceptions=True)
            upstream_writer.close()


class ForwardProxyThread:
    """``ForwardProxy`` on a loop of its own; read its record with ``passages()``."""

    def __init__(self, **kwargs: object) -> None:
        self._proxy = ForwardProxy(**kwargs)  # type: ignore[arg-type]
        self._thread = LoopThread("forward-proxy")
        self._fronts: list[TlsFront] = []

    @property
    def url(self) -> str:
        return self._proxy.url

    def passages(self) -> list[Passage]:
        return self._thread.call(lambda: list(self._proxy.passages))

    def refused(self) -> int:
        return self._thread.call(lambda: self._proxy.refused)

    def add_tls_front(self, upstream_port: int, cert_chain: Path, key: Path) -> TlsFront:
        """A ``TlsFront`` on this proxy's loop, stopped with it; read ``accepted`` via
        ``tls_connections``."""
        front = TlsFront(upstream_port, cert_chain, key)
        self._thread.run(front.start(), 30)
        self._fronts.append(front)
        return front

    def tls_connections(self, front: TlsFront) -> int:
        return self._thread.call(lambda: front.accepted)

    def __enter__(self) -> ForwardProxyThread:
        self._thread.start_serving(self._proxy.start(), 30)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            for front in self._fronts:
                self._thread.run(front.stop(), 30)
            self._thread.run(self._proxy.stop(), 30)
        finally:
            self._thread.stop()
