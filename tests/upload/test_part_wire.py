"""UploadPart on ``part_wire``'s blocking sockets, through the real S3 client (botocore signs
the request and parses the answer), against a loopback server that behaves as the test says:
over TLS with the run's own CA, through a proxy that wants credentials, slower than the read
timeout, answering the ``Expect`` early, stalling, answering without end, or untrusted.

The server reads only as its script says, so what happens is decided by the test, not by
timing; nothing sleeps to wait for a result.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError

from benchmarks.tls import TlsFiles, generate
from tests.support.forward_proxy import ForwardProxy
from uploader.config import EngineConfig
from uploader.credentials import Credentials
from uploader.events import RetryReason
from uploader.hashing import ChecksumAlgorithm
from uploader.part_body import PartProgress, PartStream
from uploader.s3client import classify, open_s3_client
from uploader.upload_session import CERTIFICATE_UNTRUSTED, ErrorKind

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
_CREDENTIALS = Credentials("AKIAPARTWIRE", "part-wire-secret", "part-wire-token")
_SLOW_DOWN = (b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code>"
              b"<Message>Please reduce your request rate.</Message></Error>")

# How the server treats one request: (reader, writer, head, length) -> None.
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes, int], Awaitable[None]]


@dataclass
class PartServer:
    """An HTTP/1.1 server for UploadPart that runs ``script`` for every request."""

    script: Script
    tls: TlsFiles | None = None
    receive_buffer: int | None = None  # SO_RCVBUF: a small one makes the kernel ack at the pace read
    connections: int = 0
    bodies: list[bytes] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Server | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        context = self.tls.server_context() if self.tls else None
        listener = socket.socket()
        if self.receive_buffer:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)
        listener.bind(("127.0.0.1", 0))
        self._server = await asyncio.start_server(self._serve, sock=listener, ssl=context,
                                                  limit=self.receive_buffer or 2**16)
        port = self._server.sockets[0].getsockname()[1]
        try:
            yield f"{'https' if self.tls else 'http'}://127.0.0.1:{port}"
        finally:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                await self.script(reader, writer, head, length)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            self.closed.set()
            writer.close()


async def _go_ahead(writer: asyncio.StreamWriter, head: bytes) -> None:
    if b"expect: 100-continue" in head.lower():
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()


async def _ok(writer: asyncio.StreamWriter, etag: str) -> None:
    writer.write(f'HTTP/1.1 200 OK\r\nETag: "{etag}"\r\nContent-Length: 0\r\n\r\n'.encode())
    await writer.drain()


def _storing(server_bodies: list[bytes], pace: tuple[int, float] | None = None) -> Script:
    """Read the whole body (``pace``: so many bytes per so many seconds) and answer 200."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes,
                     length: int) -> None:
        await _go_ahead(writer, head)
        body = bytearray()
        while len(body) < length:
            if pace is None:
                body += await reader.readexactly(length)
                continue
            body += await reader.read(min(pace[0], length - len(body)))
            await asyncio.sleep(pace[1])  # the receiver's pace, not a wait for a result
        server_bodies.append(bytes(body))
        await _ok(writer, f"etag-{len(server_bodies)}")

    return script


async def _upload(url: str, body: bytes, progress: PartProgress, *, number: int = 1,
                  stall_timeout: float = 10.0) -> dict[str, Any]:
    config = EngineConfig(endpoint_url=url, stall_timeout_seconds=stall_timeout)
    algorithm = ChecksumAlgorithm.CRC64NVME
    async with open_s3_client(config, _CREDENTIALS) as client:
        return await _part(client, body, progress, number, algorithm)


async def _part(client: Any, body: bytes, progress: PartProgress, number: int,
                algorithm: ChecksumAlgorithm = ChecksumAlgorithm.CRC64NVME) -> dict[str, Any]:
    answer: dict[str, Any] = await client.upload_part(
        Bucket="bucket", Key="game.zip", UploadId="upload-1", PartNumber=number,
        ContentLength=len(body), Body=PartStream(bytearray(body), len(body), progress),
        **algorithm.arguments(algorithm.checksum(memoryview(body))),
    )
    return answer


@pytest.fixture
def tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TlsFiles:
    """A CA and server certificate of this test's own, trusted through AWS_CA_BUNDLE only."""
    files = generate(tmp_path / "tls")
    monkeypatch.setenv("AWS_CA_BUNDLE", str(files.ca_cert))
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    return files


async def test_parts_cross_tls_whole_on_one_kept_alive_connection(tls: TlsFiles) -> None:
    bodies: list[bytes] = []
    server = PartServer(_storing(bodies), tls)
    first, second = bytes(range(256)) * (12 * 1024), b"\x07" * (5 * MiB + 3)
    config = EngineConfig(endpoint_url="", stall_timeout_seconds=10.0)
    async with server.running() as url:
        config = EngineConfig(endpoint_url=url, stall_timeout_seconds=10.0)
        async with open_s3_client(config, _CREDENTIALS) as client:
            progress = [PartProgress(), PartProgress()]
            answers = [await _part(client, first, progress[0], 1),
                       await _part(client, second, progress[1], 2)]
    assert [a["ETag"] for a in answers] == ['"etag-1"', '"etag-2"']
    assert bodies == [first, second]
    assert server.connections == 1  # the second part reused the first one's connection
    assert [p.snapshot()[:2] for p in progress] == [(len(first), 0), (len(second), 0)]


async def test_an_early_answer_to_expect_is_the_answer_and_no_body_is_sent(tls: TlsFiles) -> None:
    """S3 refuses before the body (503 SlowDown): the attempt costs a round trip, not a part."""
    received: list[int] = []

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes,
                     length: int) -> None:
        assert b"expect: 100-continue" in head.lower()
        writer.write(b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                     % (len(_SLOW_DOWN), _SLOW_DOWN))
        await writer.drain()
        got = 0
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            got = len(await reader.read())  # whatever came before the client closed
        received.append(got)

    server = PartServer(refuse, tls)
    progress = PartProgress()
    async with server.running() as url:
        with pytest.raises(ClientError) as refused:
            await _upload(url, b"x" * (3 * MiB), progress)
        await asyncio.wait_for(server.closed.wait(), 10)
    verdict = classify(refused.value)
    assert (verdict.code, verdict.reason) == ("SlowDown", RetryReason.THROTTLED)
    assert progress.bytes_read == 0 and received == [0]


async def test_an_answer_in_the_middle_of_the_body_is_the_answer(tls: TlsFiles) -> None:
    """S3 gives up on a body (400 RequestTimeout) and closes while the client still sends:
    the client reads that answer rather than reporting a broken pipe."""

    async def give_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes,
                      length: int) -> None:
        await _go_ahead(writer, head)
        await reader.readexactly(MiB)
        answer = (b"<Error><Code>RequestTimeout</Code><Message>Your socket connection to the "
                  b"server was not read from or written to within the timeout period.</Message>"
                  b"</Error>")
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\nConnection: close"
                     b"\r\n\r\n%s" % (len(answer), answer))
        await writer.drain()
        writer.close()

    server = PartServer(give_up, tls)
    async with server.running() as url:
        with pytest.raises(ClientError) as answered:
            await _upload(url, b"t" * (24 * MiB), PartProgress())
    verdict = classify(answered.value)
    assert (verdict.code, verdict.reason) == ("RequestTimeout", RetryReason.REQUEST_TIMEOUT)


async def test_a_body_slower_than_the_read_timeout_still_arrives(tls: TlsFiles) -> None:
    """Each 1 MiB slice takes ~1.6 s to leave, longer than the read timeout (1 s), while bytes keep
    moving: a timeout on the whole write (Python's, for plain and TLS sockets alike) would cut
    it; only a silent link is a stall. Plain HTTP: TLS's buffers on the server would hold more
    of the tail, acknowledged but unread, than the read timeout allows."""
    bodies: list[bytes] = []
    server = PartServer(_storing(bodies, pace=(64 * 1024, 0.1)), receive_buffer=32 * 1024)
    body = b"\x5a" * (3 * MiB + 17)  # more than the socket buffers hold
    progress = PartProgress()
    async with server.running() as url:
        answer = await _upload(url, body, progress, stall_timeout=1.0)
    assert answer["ETag"] == '"etag-1"' and bodies == [body]


async def test_cancelling_a_stalled_part_closes_its_connection_and_lets_go_of_the_buffer(
    tls: TlsFiles,
) -> None:
    """The stall watchdog's cancel: the receiver stopped reading, the worker thread is blocked
    in ``sendall``. Cancelling ends the request at once, the server sees the connection go,
    and no byte of the buffer is handed over after the cancel returned."""
    started = asyncio.Event()

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes,
                    length: int) -> None:
        await _go_ahead(writer, head)
        await reader.readexactly(MiB)
        started.set()
        await reader.read()  # only to see the end: the client's sockets fill up meanwhile

    server = PartServer(stall, tls)
    progress = PartProgress()
    async with server.running() as url:
        request = asyncio.ensure_future(_upload(url, b"s" * (32 * MiB), progress))
        await started.wait()
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        handed = progress.bytes_read
        await asyncio.wait_for(server.closed.wait(), 10)
    assert MiB <= handed < 32 * MiB
    assert progress.bytes_read == handed


async def test_an_answer_without_end_is_cut_at_the_cap(tls: TlsFiles) -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes,
                      length: int) -> None:
        await _go_ahead(writer, head)
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (64 * MiB))
        with contextlib.suppress(ConnectionError):
            for _ in range(64):
                writer.write(b"\x00" * MiB)
                await writer.drain()

    server = PartServer(endless, tls)
    async with server.running() as url:
        with pytest.raises(ConnectionClosedError) as cut:
            await _upload(url, b"p" * MiB, PartProgress())
    assert classify(cut.value).reason is RetryReason.CONNECTION_RESET
    assert "over 1048576 bytes" in str(cut.value.kwargs.get("error", ""))


async def test_a_certificate_the_ca_bundle_does_not_trust_is_permanent(
    tls: TlsFiles, tmp_path: Path,
) -> None:
    stranger = generate(tmp_path / "stranger")  # same names, another CA
    server = PartServer(_storing([]), stranger)
    async with server.running() as url:
        with pytest.raises(Exception) as rejected:
            await _upload(url, b"c" * MiB, PartProgress())
    verdict = classify(rejected.value)
    assert (verdict.kind, verdict.code) == (ErrorKind.PERMANENT, CERTIFICATE_UNTRUSTED)


async def test_a_certificate_for_another_host_is_refused_on_both_transports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A certificate the CA bundle trusts, but for 127.0.0.1 only, reached as "localhost": the
    part wire and aiohttp (every other S3 call, each carrying the session token) refuse it."""
    files = generate(tmp_path / "ip-only", dns_names=())
    monkeypatch.setenv("AWS_CA_BUNDLE", str(files.ca_cert))
    server = PartServer(_storing([]), files)
    async with server.running() as url:
        config = EngineConfig(endpoint_url=url.replace("127.0.0.1", "localhost"),
                              stall_timeout_seconds=10.0)
        async with open_s3_client(config, _CREDENTIALS) as client:
            with pytest.raises(Exception) as part_refused:
                await _part(client, b"h" * MiB, PartProgress(), 1)
            with pytest.raises(Exception) as head_refused:
                await client.head_object(Bucket="bucket", Key="game.zip")
    for refused in (part_refused.value, head_refused.value):
        verdict = classify(refused)
        assert (verdict.kind, verdict.code) == (ErrorKind.PERMANENT, CERTIFICATE_UNTRUSTED), refused


async def test_a_part_goes_through_the_proxys_tunnel_with_its_credentials(
    tls: TlsFiles, monkeypatch: pytest.MonkeyPatch,
) -> None:
    bodies: list[bytes] = []
    server = PartServer(_storing(bodies), tls)
    body = b"\x11" * (2 * MiB)
    async with server.running() as url, ForwardProxy(credentials=("builder", "pr0xy")) as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        answer = await _upload(url, body, PartProgress())
        tunnels = proxy.tunnels_to(url.removeprefix("https://"))
    assert answer["ETag"] == '"etag-1"' and bodies == [body]
    assert tunnels == 1 and proxy.refused == 0
