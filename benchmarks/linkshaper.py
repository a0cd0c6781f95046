"""A TCP-level link between client and sink: a bandwidth cap and a round-trip time, any protocol.

``python -m benchmarks.linkshaper --port P --upstream 127.0.0.1:Q --mbit 200 --rtt-ms 50``
accepts connections on ``P`` and relays each, byte for byte, to the sink on ``Q``. It never
looks inside, so TLS runs end to end between the tool and the sink (the ``tls-shaped`` and
``tls-slow`` conditions): the certificate each tool verifies is the sink's own. (The fault
proxy, ``service.emulator.faultproxy``, speaks plain HTTP: it must read requests to fault them.)

The link, per direction: bytes are serialised at the rate (one queue per direction shared by
every connection, as on one access link) and delivered half a round-trip later. What the client
sees is a receiver that drains at the link's pace: accepted sockets get a WAN-like MSS (1460
bytes) and a 64 KiB receive buffer, and a connection is not read from while the link has more
than ``QUEUE_SECONDS`` of its bytes waiting, so unsent bytes stay in the client's own socket
and drain in small pieces, as they do behind a real bottleneck. Bytes in flight (the delay
line) are bounded by rate x RTT, like a link's.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import socket
import sys
from dataclasses import dataclass

MSS_BYTES = 1460
RECEIVE_BUFFER_BYTES = 64 * 1024
QUEUE_SECONDS = 0.002  # the bottleneck's queue: this much of the link's time, then back-pressure


@dataclass(frozen=True)
class Link:
    """One link profile: the cap (Mbit/s) and the round-trip time it adds (ms)."""

    mbit: float
    rtt_ms: float

    def describe(self) -> str:
        return f"{self.mbit:g} Mbit/s, {self.rtt_ms:g} ms round trip (TCP-level link)"

    def argv(self, port: int, upstream_port: int) -> list[str]:
        return [
            sys.executable, "-m", "benchmarks.linkshaper", "--port", str(port),
            "--upstream", f"127.0.0.1:{upstream_port}",
            "--mbit", f"{self.mbit:g}", "--rtt-ms", f"{self.rtt_ms:g}",
        ]


class _Direction:
    """One direction of the link: a serialising queue followed by a delay line."""

    def __init__(self, loop: asyncio.AbstractEventLoop, rate: float, delay: float) -> None:
        self.loop = loop
        self.rate = rate  # bytes per second
        self.delay = delay  # one way, seconds
        self.free_at = 0.0  # when the link finishes serialising what it has taken so far
        self._line: collections.deque[tuple[float, asyncio.Transport, bytes]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None

    def carry(self, data: bytes, source: asyncio.Transport, target: asyncio.Transport) -> None:
        now = self.loop.time()
        self.free_at = max(now, self.free_at) + len(data) / self.rate
        self._line.append((self.free_at + self.delay, target, data))
        if self._timer is None:
            self._timer = self.loop.call_at(self._line[0][0], self._deliver)
        backlog = self.free_at - now - QUEUE_SECONDS
        if backlog > 0:  # the queue is full: read this connection again once it has room
            with contextlib.suppress(RuntimeError):
                source.pause_reading()
            self.loop.call_later(backlog, _resume, source)

    def _deliver(self) -> None:
        self._timer = None
        now = self.loop.time()
        while self._line and self._line[0][0] <= now:
            _, target, data = self._line.popleft()
            if not target.is_closing():
                target.write(data)
        if self._line:
            self._timer = self.loop.call_at(self._line[0][0], self._deliver)


def _resume(transport: asyncio.Transport) -> None:
    if not transport.is_closing():
        with contextlib.suppress(RuntimeError):
            transport.resume_reading()


class _Side(asyncio.Protocol):
    """One socket of a relayed connection; what it reads crosses the link to its peer."""

    def __init__(self, direction: _Direction) -> None:
        self.direction = direction
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self._early: list[bytes] = []  # read before the peer connected

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        if self.peer is None or self.peer.transport is None:
            self._early.append(data)
            return
        self.direction.carry(data, self.transport, self.peer.transport)

    def connected(self, peer: _Side) -> None:
        self.peer = peer
        for data in self._early:
            self.data_received(data)
        self._early.clear()

    def eof_received(self) -> bool:
        if self.peer is not None and self.peer.transport is not None:
            peer = self.peer.transport
            # after the bytes still on the line (half a round trip)
            self.direction.loop.call_at(self.direction.free_at + self.direction.delay, _close, peer)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.direction.loop.call_at(
                self.direction.free_at + self.direction.delay, _close, self.peer.transport
            )


def _close(transport: asyncio.Transport) -> None:
    if not transport.is_closing():
        transport.close()


async def serve(port: int, upstream: tuple[str, int], link: Link) -> None:
    loop = asyncio.get_running_loop()
    rate = link.mbit * 1e6 / 8
    one_way = link.rtt_ms / 2000
    up, down = _Direction(loop, rate, one_way), _Direction(loop, rate, one_way)
    connecting: set[asyncio.Task[None]] = set()  # referenced until done

    def accept() -> _Side:
        client = _Side(up)

        async def connect() -> None:
            try:
                _, server = await loop.create_connection(lambda: _Side(down), *upstream)
            except OSError:
                if client.transport is not None:
                    client.transport.abort()
                return
            server.peer = client
            client.connected(server)

        task = loop.create_task(connect())
        connecting.add(task)
        task.add_done_callback(connecting.discard)
        return client

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    with contextlib.suppress(OSError):  # inherited by accepted sockets
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, MSS_BYTES)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
    listener.bind(("127.0.0.1", port))
    server = await loop.create_server(accept, sock=listener, backlog=1024)
    async with server:
        print(f"READY {listener.getsockname()[1]}", flush=True)
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.linkshaper", description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the sink")
    parser.add_argument("--mbit", type=float, required=True, help="the cap, Mbit/s")
    parser.add_argument("--rtt-ms", type=float, default=0.0, help="added round-trip time, ms")
    args = parser.parse_args(argv)
    host, _, port = args.upstream.rpartition(":")
    import uvloop

    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(args.port, (host, int(port)), Link(args.mbit, args.rtt_ms)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
