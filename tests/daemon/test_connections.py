"""The connection guard on real loopback sockets: a cap, head deadlines, eviction of the
longest-waiting idle connection, JSON for unparseable HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from service.daemon.connections import ConnectionGuard, GuardedTCPSite, connection_cap

pytestmark = pytest.mark.integration

HEAD = b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n"


class Entered:
    """Counts /slow requests that are inside their handler."""

    def __init__(self) -> None:
        self.count = 0
        self.changed = asyncio.Event()

    def add(self) -> None:
        self.count += 1
        self.changed.set()


entered: Entered


async def until_inside_slow(count: int) -> None:
    while entered.count < count:
        entered.changed.clear()
        await entered.changed.wait()


@pytest.fixture
async def served() -> AsyncIterator[tuple[ConnectionGuard, int, asyncio.Event]]:
    """(guard with room for 3 connections and a 0.5 s head deadline, port, release of /slow).

    Each request to /slow counts in ``entered`` once it is inside its handler."""
    guard = ConnectionGuard(3, header_timeout=0.5)
    release = asyncio.Event()
    global entered
    entered = Entered()

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"hello": "world"})

    async def slow(request: web.Request) -> web.Response:
        entered.add()
        await release.wait()
        return web.json_response({"slow": True})

    app = web.Application(middlewares=[guard.middleware])
    app.router.add_get("/hello", hello)
    app.router.add_get("/slow", slow)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = GuardedTCPSite(runner, "127.0.0.1", 0, guard=guard)
    await site.start()
    try:
        yield guard, site.port, release
    finally:
        release.set()
        await runner.cleanup()


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    try:
        return await reader.read() == b""
    except ConnectionResetError:
        return True


async def get(port: int, path: str = "/hello") -> tuple[int, dict[str, object]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


async def test_a_request_head_that_never_ends_is_dropped(served: tuple[ConnectionGuard, int, asyncio.Event]) -> None:
    guard, port, _ = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(HEAD)  # and never the blank line
    assert await closed_by_server(reader)
    assert guard.timed_out == 1 and guard.open_connections == 0
    writer.close()


async def test_when_full_the_longest_waiting_idle_connection_makes_room(
    served: tuple[ConnectionGuard, int, asyncio.Event],
) -> None:
    guard, port, release = served
    guard.header_timeout = 60.0  # only eviction may drop them here
    stalled = []
    for _ in range(2):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HEAD)
        stalled.append((reader, writer))
    busy = asyncio.create_task(get(port, "/slow"))  # the third: inside a handler
    await until_inside_slow(1)  # accepted after the two stalled ones (accepts are in order)
    assert await get(port) == (200, {"hello": "world"})  # full, yet answered
    assert await closed_by_server(stalled[0][0])  # the oldest stalled one made room
    assert guard.evicted >= 1
    assert not busy.done()  # a request in progress is never evicted
    release.set()
    assert await busy == (200, {"slow": True})
    for _, writer in stalled:
        writer.close()


async def test_when_every_connection_is_busy_the_newcomer_is_refused(
    served: tuple[ConnectionGuard, int, asyncio.Event],
) -> None:
    guard, port, release = served
    busy = [asyncio.create_task(get(port, "/slow")) for _ in range(3)]
    await until_inside_slow(3)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await closed_by_server(reader)
    assert guard.refused == 1
    release.set()
    assert [await b for b in busy] == [(200, {"slow": True})] * 3
    writer.close()


async def test_unparseable_http_gets_a_json_400(served: tuple[ConnectionGuard, int, asyncio.Event]) -> None:
    _, port, _ = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n")
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split()[1] == b"400" and b"application/json" in head
    assert json.loads(body)["error"].startswith("malformed HTTP request")


def test_the_cap_leaves_most_descriptors_to_the_jobs() -> None:
    assert connection_cap(4096) == 1024  # launchd's plist: 3,072 descriptors stay free
    assert connection_cap(1024) == 256  # Linux's usual soft limit
    assert connection_cap(256) == 64  # macOS's usual soft limit
    assert connection_cap(20) == 16
