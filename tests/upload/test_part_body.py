"""The part body on a real loopback socket: aiohttp writes it through ``PartPayload`` in large
slices, and ``PartProgress`` follows the kernel's count of bytes that left, not the hand-over.

The receiver is a plain asyncio server that reads only when the test says so, so what is
"sent" is decided by the test, not by timing. Nothing sleeps: the test waits for conditions.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from aiohttp import payload

from uploader.part_body import PartPayload, PartProgress, PartStream
from uploader.s3client import wire_tracking_socket

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


class Receiver:
    """An HTTP/1.1 server for one PUT that reads the body only as far as ``allow`` lets it."""

    def __init__(self) -> None:
        self.received = 0
        self.allowed = 0
        self._more = asyncio.Event()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Receiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/b/k"

    def allow(self, nbytes: int) -> None:
        self.allowed = nbytes
        self._more.set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        while self.received < length:
            if self.received >= self.allowed:
                self._more.clear()
                await self._more.wait()
                continue
            chunk = await reader.read(min(64 * 1024, self.allowed - self.received))
            if not chunk:
                return
            self.received += len(chunk)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()


async def _until(condition: Callable[[], bool]) -> None:
    """Yield to the loop until ``condition`` holds (the test's timeout bounds it)."""
    while not condition():  # noqa: ASYNC110 - the condition is the kernel's, no event exists
        await asyncio.sleep(0.001)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(socket_factory=wire_tracking_socket)
    async with aiohttp.ClientSession(connector=connector) as client:
        yield client


def test_aiohttp_sends_a_part_stream_through_part_payload() -> None:
    stream = PartStream(bytearray(3 * MiB), 3 * MiB, PartProgress())
    body = payload.PAYLOAD_REGISTRY.get(stream, disposition=None)
    assert isinstance(body, PartPayload) and body.size == 3 * MiB


async def test_every_byte_arrives_and_counts_once(session: aiohttp.ClientSession) -> None:
    data = bytearray(range(256)) * (40 * 1024)  # 10 MiB, not a whole number of slices + 1
    length = len(data) - 12345
    progress = PartProgress()
    async with Receiver() as receiver:
        receiver.allow(length)
        async with session.put(receiver.url, data=PartStream(data, length, progress)) as answer:
            assert answer.status == 200
        assert receiver.received == length
    assert progress.snapshot()[:2] == (length, 0)


@pytest.mark.skipif(sys.platform != "linux", reason="the kernel counter probed is Linux's here")
async def test_progress_follows_the_wire_and_its_movement_is_activity(
    session: aiohttp.ClientSession,
) -> None:
    """A receiver that stops reading: bytes handed to the transport are not "sent" until the
    kernel saw them leave, and each read it makes moves progress and activity (the watchdog's
    view) although nothing more is handed over."""
    length = 16 * MiB
    progress = PartProgress()
    async with Receiver() as receiver:
        receiver.allow(MiB)
        request = asyncio.ensure_future(
            session.put(receiver.url, data=PartStream(bytearray(length), length, progress))
        )
        # the body is on its way, and the receiver has taken its first MiB
        await _until(lambda: receiver.received >= MiB and progress.bytes_read > 0)
        handed = progress.bytes_read
        sent, _, _ = progress.snapshot()
        assert sent < handed  # bytes waiting in our transport and kernel are not "sent"
        assert MiB <= sent
        before_sent, _, before_activity = progress.snapshot()
        receiver.allow(2 * MiB)
        await _until(lambda: progress.snapshot()[0] > before_sent)
        after_sent, _, after_activity = progress.snapshot()
        assert after_activity > before_activity
        assert after_sent <= progress.bytes_read
        receiver.allow(length)
        async with await request as answer:
            assert answer.status == 200
    assert progress.snapshot()[0] == length


class _Link:
    """A fake clock and a connection's wire counter that drains at ``rate`` bytes a second."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.now = 0.0
        self.handed = 0
        self.looks = 0
        self._wire = 0.0

    def probe(self) -> int:
        self.looks += 1
        return int(self._wire)

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        self._wire = min(float(self.handed), self._wire + self.rate * seconds)


async def test_the_tail_of_a_slow_part_is_waited_out_in_a_few_looks() -> None:
    """On a slow link the last MiBs of a part wait in the socket after the hand-over: ``left``
    returns only once the wire counter saw all of them, and looks about when they should be
    gone at the pace it measures, not every few milliseconds."""
    link = _Link(rate=3e6)  # ~24 Mbit/s: one of 8 connections on a 200 Mbit/s link
    progress = PartProgress(clock=lambda: link.now, sleep=link.sleep)
    progress.watch(link.probe, again=False)
    for _ in range(16):  # the part is handed over a MiB at a time, at the link's pace
        progress.advance(MiB)
        link.handed += MiB
        await link.sleep(MiB / link.rate * 0.9)  # the socket buffers what is not yet gone
    unsent = link.handed - progress.snapshot()[0]
    assert unsent > MiB // 2  # a real tail is left to wait for
    link.looks = 0
    await progress.left()
    assert progress.snapshot()[0] == 16 * MiB
    assert link.looks <= 8  # polling from the pass's pace took 51 looks for this tail
