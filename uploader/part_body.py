"""The request body of one UploadPart: the part read into a pooled buffer, streamed in slices.

Why this shape (measured with ``strace -c`` on a 1 GiB upload): letting aiohttp read a
file-like body costs one executor hand-off per 256 KiB read (91,000 futex calls per GiB, more
system time than the transfer itself). Instead the engine reads the whole part with one
``preadv`` on a worker thread into a buffer it reuses, checks its checksum there (a file changed
under us is caught *before* any byte is sent), and hands aiohttp an async iterator of 256 KiB
slices of that buffer: no further copies in Python and no thread hops. (``read``/``seek``
exist only because botocore's validation and CRT signer want a file-like body; aiohttp streams
the iterator.)

On a socket the body is written by ``send`` (aiohttp calls it through ``PartPayload``) in
1 MiB slices, each awaited until the transport drained below its low-water mark (set to a
quarter slice): at link-bound rates that is one event-loop round trip per MiB, whatever pace the
receiver sets (with ``TCP_NOTSENT_LOWAT`` of 1 MiB, see ``s3client``, the kernel also wakes the
loop once per half MiB drained rather than per few KiB). ``PartProgress`` does not trust the
hand-over alone: ``send`` attaches a probe of the connection's kernel counter of bytes that
left (``TCP_INFO`` bytes acknowledged on Linux, ``TCP_CONNECTION_INFO`` bytes transmitted on
macOS), so the stall watchdog sees bytes actually leaving the machine, one TCP segment at a
time, and the bytes counted as sent follow the wire, not the buffers in front of it.
Consumers that iterate the body instead (the in-memory fake) get 256 KiB slices.

Memory: one buffer of the part size per part in flight (8 x 16 MiB by default), allocated once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import payload

from uploader.buffers import ReadBuffer
from uploader.hashing import ChecksumAlgorithm
from uploader.planning import Part
from uploader.throttle import Throttle

# Written to the socket per event-loop round trip. Progress does not depend on it (the kernel
# probe reports bytes leaving), so it is sized for few round trips: ~1,000 per GiB.
SLICE_BYTES = 1024 * 1024
# Iterated slices (the in-memory fake) and slices under a bandwidth cap (finer pacing).
ITER_SLICE_BYTES = 256 * 1024

Probe = Callable[[], int | None]

# At most this many bytes may wait unsent in the kernel per connection, and the kernel wakes
# the writer once half of them left (Linux wakes below lowat/2): 1 MiB means one wake-up
# per 512 KiB whatever the receiver's pace, where 128 KiB cost ~12,000 per GiB behind a slow
# link. Without a bound the auto-tuned send buffer (up to 4 MiB) would swallow a quarter part
# at once; the stall watchdog does not depend on it (``socket_probe`` reads the kernel's
# own count of bytes that left). Bytes sent but not yet acknowledged are not limited, so
# throughput on long fat links is unaffected. SO_SNDBUF is left to the kernel's auto-tuning
# (Linux and macOS grow it to 4 MiB or more; a fixed value would switch that off).
NOTSENT_LOWAT_BYTES = 1024 * 1024
_TCP_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 0x201 if sys.platform == "darwin" else None)


def tune_socket(sock: socket.socket) -> None:
    """The options of every socket a part body goes through (aiohttp's and ``part_wire``'s):
    a bounded unsent backlog, and keep-alive probes on an idle connection."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if _TCP_NOTSENT_LOWAT is not None:
        with contextlib.suppress(OSError):  # not every kernel has it; then we only lose precision
            sock.setsockopt(socket.IPPROTO_TCP, _TCP_NOTSENT_LOWAT, NOTSENT_LOWAT_BYTES)


# (level, option, length, offset of a u64 counter of bytes that left) per platform: Linux's
# tcp_info.tcpi_bytes_acked; macOS's tcp_connection_info.tcpi_txbytes.
_WIRE_COUNTER = {
    "linux": (socket.IPPROTO_TCP, 11, 136, 120),
    "darwin": (socket.IPPROTO_TCP, 0x106, 0x70, 64),
}.get(sys.platform)


def wire_probe(transport: Any) -> Probe | None:
    """``socket_probe`` of an asyncio transport's socket."""
    return socket_probe(transport.get_extra_info("socket") if transport is not None else None)


def socket_probe(sock: Any) -> Probe | None:
    """A callable returning the connection's count of bytes the kernel saw leave, or None."""
    if sock is None or _WIRE_COUNTER is None:
        return None
    level, option, length, offset = _WIRE_COUNTER

    def probe() -> int | None:
        try:
            info = sock.getsockopt(level, option, length)
        except (OSError, ValueError):  # closed, or not TCP
            return None
        return int(struct.unpack_from("=Q", info, offset)[0]) if len(info) >= offset + 8 else None

    return probe if probe() is not None else None


class PartProgress:
    """Bytes of the part that left, and when (by ``clock``, the engine's monotonic clock); read
    by the engine's stall watchdog.

    Without a probe, a byte counts once handed to the network. With one (``watch``), bytes
    handed over in this pass count only as far as the kernel's counter moved since the pass
    began, and any movement of that counter is activity: the watchdog sees the wire.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.bytes_read = 0  # handed over
        self.bytes_reread = 0  # handed over a second time within one request (aiohttp re-send)
        self._clock, self._sleep = clock, sleep
        self.last_activity = clock()
        self._lock = threading.Lock()
        self._probe: Probe | None = None
        self._pass_start = 0  # bytes_read when this pass began
        self._pass_again = False
        self._pass_began = self.last_activity  # when this pass began, by ``clock``
        self._wire_start = self._wire_seen = 0

    def advance(self, nbytes: int, reread: int = 0) -> None:
        with self._lock:
            self.bytes_read += nbytes
            self.bytes_reread += reread
            self.last_activity = self._clock()

    def watch(self, probe: Probe | None, *, again: bool) -> None:
        """A new pass over the body begins on the connection ``probe`` reads (None: unknown)."""
        start = probe() if probe is not None else None
        with self._lock:
            self._probe = probe if start is not None else None
            self._pass_start, self._pass_again = self.bytes_read, again
            self._pass_began = self._clock()
            self._wire_start = self._wire_seen = start or 0

    async def left(self) -> None:
        """Return once the kernel saw every byte handed over in this pass leave (at once
        without a probe). aiohttp starts its read timeout when the body is written: this makes
        that mean "reached the server", not "queued in our buffers", on a slow link too. A
        receiver that stops reading meanwhile is the stall watchdog's to catch.

        Each look sleeps about as long as the rest should take at the pace seen since the last
        look (the pass's pace before the first): on a slow link a part's tail is waited out in a
        few wake-ups, not one per 10 ms.
        """
        if self._probe is None:
            return
        seen, seen_at = self._pass_start, self._pass_began
        while True:
            sent, _, _ = self.snapshot()
            unsent = self.bytes_read - sent
            if unsent <= 0:
                return
            now = self._clock()
            pace = (sent - seen) / max(1e-3, now - seen_at)
            seen, seen_at = sent, now
            await self._sleep(min(0.25, max(0.01, unsent / max(pace, 1.0))))

    def moved_within(self, seconds: float) -> bool:
        """True if the wire counter moved (or bytes were handed over) in the last ``seconds``."""
        _, _, last = self.snapshot()
        return self._clock() - last < seconds

    def snapshot(self) -> tuple[int, int, float]:
        """(bytes sent, of which sent a second time, monotonic time of the last movement)."""
        probe = self._probe
        wire = probe() if probe is not None else None
        with self._lock:
            sent, again, last = self.bytes_read, self.bytes_reread, self.last_activity
            if wire is None:
                return sent, again, last
            if wire != self._wire_seen:
                self._wire_seen = wire
                self.last_activity = last = max(last, self._clock())
            handed = sent - self._pass_start
            lag = handed - min(handed, max(0, wire - self._wire_start))
            return sent - lag, max(0, again - lag) if self._pass_again else again, last


def read_part(fd: int, part: Part, buffer: ReadBuffer, algorithm: ChecksumAlgorithm) -> str | None:
    """Fill ``buffer[:part.length]`` from the file; return the part's checksum (wire form).

    Blocking: run it on a worker thread. Returns None when the file is shorter than planned.
    """
    view = memoryview(buffer)[: part.length]
    done = 0
    while done < part.length:
        n = os.preadv(fd, [view[done:]], part.offset + done)
        if n == 0:
            return None
        done += n
    return algorithm.checksum(view)


class PartStream:
    """Async-iterable body over ``buffer[:length]``; re-iterable (each pass counts as re-sent)."""

    def __init__(
        self,
        buffer: ReadBuffer,
        length: int,
        progress: PartProgress,
        throttle: Throttle | None = None,
    ) -> None:
        self._view = memoryview(buffer)[:length]
        self._progress = progress
        self._throttle = throttle
        self._passes = 0
        self._position = 0

    def __len__(self) -> int:
        return len(self._view)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: len(self._view)}[whence]
        self._position = max(0, min(len(self._view), base + offset))
        return self._position

    def tell(self) -> int:
        return self._position

    def read(self, size: int = -1) -> bytes:
        """Plain sequential reads (only for code that insists on a file-like body)."""
        end = len(self._view) if size is None or size < 0 else self._position + size
        data = bytes(self._view[self._position : end])
        self._position += len(data)
        return data

    def __aiter__(self) -> AsyncIterator[memoryview]:
        return self._slices(again=self._begin_pass())

    def _begin_pass(self) -> bool:
        """Count a pass over the body; True if it is not the first (its bytes are re-sent)."""
        self._passes += 1
        return self._passes > 1

    async def _slices(self, *, again: bool) -> AsyncIterator[memoryview]:
        for start in range(0, len(self._view), ITER_SLICE_BYTES):
            piece = self._view[start : start + ITER_SLICE_BYTES]
            if self._throttle is not None:
                await self._throttle.acquire(len(piece))
            self._progress.advance(len(piece), len(piece) if again else 0)
            yield piece

    @property
    def paced(self) -> bool:
        """True under a bandwidth cap, whose waits are the event loop's."""
        return self._throttle is not None

    def moved_within(self, seconds: float) -> bool:
        """True if bytes of this body left (or were handed over) in the last ``seconds``."""
        return self._progress.moved_within(seconds)

    def write_blocking(self, send: Callable[[memoryview], None], probe: Probe | None) -> None:
        """Write the body with ``send`` (a blocking ``sendall``, on a worker thread), a slice
        at a time, with ``probe`` (the socket's wire counter) as progress probe."""
        again = self._begin_pass()
        self._progress.watch(probe, again=again)
        for start in range(0, len(self._view), SLICE_BYTES):
            piece = self._view[start : start + SLICE_BYTES]
            self._progress.advance(len(piece), len(piece) if again else 0)
            send(piece)

    async def send(self, writer: Any, limit: int | None = None) -> None:
        """Write the body (its first ``limit`` bytes) to aiohttp's ``writer``, a slice per
        round trip of the event loop, with the connection's wire counter as progress probe."""
        again = self._begin_pass()
        transport = getattr(writer, "transport", None)
        if transport is not None:
            transport.set_write_buffer_limits(high=SLICE_BYTES, low=SLICE_BYTES // 4)
        self._progress.watch(wire_probe(transport), again=again)
        step = SLICE_BYTES if self._throttle is None else ITER_SLICE_BYTES
        end = len(self._view) if limit is None else min(limit, len(self._view))
        for start in range(0, end, step):
            piece = self._view[start : min(end, start + step)]
            if self._throttle is not None:
                await self._throttle.acquire(len(piece))
            self._progress.advance(len(piece), len(piece) if again else 0)
            await writer.write(piece)
        await self._progress.left()


class PartPayload(payload.Payload):
    """aiohttp's view of a ``PartStream``: sized, re-sendable, written by ``PartStream.send``."""

    _autoclose = True  # nothing to close: the buffer belongs to the engine

    def __init__(self, value: PartStream, *args: Any, **kwargs: Any) -> None:
        super().__init__(value, *args, **kwargs)
        self._size = len(value)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        raise TypeError("a part body is not text")

    async def write(self, writer: Any) -> None:
        await self._value.send(writer)

    async def write_with_length(self, writer: Any, content_length: int | None) -> None:
        await self._value.send(writer, content_length)


payload.PAYLOAD_REGISTRY.register(PartPayload, PartStream, order=payload.Order.try_first)
