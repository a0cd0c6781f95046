"""``python -m benchmarks.store_ack``: what a part acknowledgement costs on each state store.

A part is acknowledged by ``UploadStore.mark_part_done`` (one ``UPDATE parts``) after S3 answers
its PUT. This measures that call on the SQLite file (WAL, synchronous=NORMAL) and on a local
PostgreSQL (Unix socket, fsync and synchronous commit on, as a fleet runs it), one after another
and with 8 acknowledgements in flight (a part upload's default concurrency), for uploads of 100
and 1,000 parts: the cost per part, and whether it grows with the number of parts.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from uploader.checksum import ChecksumAlgorithm
from uploader.postgres import open_database
from uploader.source_file import FileIdentity
from uploader.upload_state import UploadStore


async def _measure(url: str, state: Path, parts: int) -> dict[str, float]:
    db = await open_database(state / f"{parts}.sqlite3", url)
    try:
        store = UploadStore(db)
        source = state / f"source-{parts}"
        source.write_bytes(b"x" * parts)
        record = await store.create(FileIdentity.of(source), 1, ChecksumAlgorithm.CRC32, "b", f"k{parts}", "")
        took = []
        for number in range(1, parts // 2 + 1):  # one after another
            started = time.perf_counter()
            await store.mark_part_done(record.id, number, f'"{number}"')
            took.append(time.perf_counter() - started)
        started = time.perf_counter()
        rest = range(parts // 2 + 1, parts + 1)
        queue = list(rest)

        async def acker() -> None:
            while queue:
                number = queue.pop()
                await store.mark_part_done(record.id, number, f'"{number}"')

        await asyncio.gather(*(acker() for _ in range(8)))
        concurrent = time.perf_counter() - started
        assert all(p.done for p in await store.parts(record.id))
        took.sort()
        return {"median_ms": statistics.median(took) * 1e3, "p99_ms": took[int(len(took) * 0.99)] * 1e3,
                "per_part_8_in_flight_ms": concurrent / len(rest) * 1e3}
    finally:
        await db.close()


def main() -> int:
    from tests.support.postgres import PostgresServer  # the suite's throwaway cluster

    server = PostgresServer(durable=True)
    server.start()
    results: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory() as folder:
            for engine, url in (("sqlite", ""), ("postgresql", server.create_database())):
                for parts in (100, 1000):
                    results[f"{engine}/{parts}"] = asyncio.run(_measure(url, Path(folder), parts))
    finally:
        server.stop()
    json.dump(results, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
