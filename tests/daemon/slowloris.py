"""A bounded, self-stopping slowloris flood against a loopback HTTP port (a test tool).

    python slowloris.py PORT CONNECTIONS SECONDS

Keeps CONNECTIONS connections open, each sending a request head one header line at a time
and never finishing it; a connection the server closes is opened again. Stops after SECONDS, or
as soon as its stdin closes (the test that started it is gone). Prints "ready" once every
connection has been tried, and one JSON line of counts at the end.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time

TRICKLE_SECONDS = 1.0


class Flood:
    def __init__(self, port: int, connections: int) -> None:
        self.port = port
        self.connections = connections
        self.open = 0
        self.peak_open = 0
        self.connects = 0
        self.refused = 0
        self.dropped = 0
        self.stopping = False
        self.untried = connections
        self.all_tried = asyncio.Event()  # every connection has made its first attempt

    def _tried(self) -> None:
        self.untried -= 1
        if not self.untried:
            self.all_tried.set()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        try:
            return await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            self.refused += 1
            return None

    async def one(self) -> None:
        tried = False
        while not self.stopping:
            connected = await self._connect()
            if not tried:
                tried = True
                self._tried()
            if connected is None:
                await asyncio.sleep(0.5)
                continue
            reader, writer = connected
            self.connects += 1
            self.open += 1
            self.peak_open = max(self.peak_open, self.open)
            try:
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                n = 0
                while not self.stopping:
                    await writer.drain()
                    data = None
                    try:  # the server closing is the only thing that can arrive
                        async with asyncio.timeout(TRICKLE_SECONDS):
                            data = await reader.read(1024)
                    except TimeoutError:
                        pass
                    if data == b"":
                        break
                    writer.write(f"X-Slow-{n}: a\r\n".encode())
                    n += 1
            except OSError:
                pass
            finally:
                self.open -= 1
                self.dropped += 1
                writer.close()
            await asyncio.sleep(0.05)


async def main(port: int, connections: int, seconds: float) -> None:
    flood = Flood(port, connections)
    loop = asyncio.get_running_loop()
    stdin_closed = loop.create_future()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def watch_stdin() -> None:
        await reader.read()
        stdin_closed.set_result(None)

    started = time.monotonic()
    tasks = [asyncio.create_task(watch_stdin())]
    for i in range(connections):
        tasks.append(asyncio.create_task(flood.one()))
        if i % 100 == 99:
            await asyncio.sleep(0)  # let the connects so far proceed
    await flood.all_tried.wait()
    print("ready", flush=True)
    await asyncio.wait([stdin_closed], timeout=seconds)
    flood.stopping = True  # also ends a task whose cancellation got lost in a race
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps({
        "connections": connections, "seconds": round(time.monotonic() - started, 1),
        "connects": flood.connects, "dropped_by_server": flood.dropped, "connect_errors": flood.refused,
        "peak_open": flood.peak_open,
    }), flush=True)


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = int(sys.argv[2]) + 64
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
