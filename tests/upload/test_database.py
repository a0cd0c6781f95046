from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from tests.support.postgres import OpenDb
from uploader.database import Database
from uploader.migrations import SCHEMA
from uploader.schema import LAYOUT


async def test_created_private_with_wal_and_current_schema(tmp_path: Path) -> None:
    path = tmp_path / "state" / "notaryd.sqlite3"
    db = await Database.open(path)
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert await db.schema_versions() == {"uploader": SCHEMA.version}
        row = await db.fetchone("PRAGMA user_version")
        assert row is not None and row[0] == LAYOUT
        row = await db.fetchone("PRAGMA journal_mode")
        assert row is not None and row[0] == "wal"
    finally:
        await db.close()
    again = await Database.open(path)  # re-opening runs no migration twice
    assert await again.schema_versions() == {"uploader": SCHEMA.version}
    await again.close()


async def test_transaction_rolls_back_on_error_and_on_cancellation(tmp_path: Path, open_db: OpenDb) -> None:
    db = await open_db(tmp_path / "db")
    try:
        with pytest.raises(RuntimeError):
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO submission_intents (name, sha256, path, started_at)"
                                 " VALUES ('a', '', '/x', 0)")
                raise RuntimeError
        assert await db.fetchone("SELECT * FROM submission_intents") is None

        started = asyncio.Event()

        async def slow_transaction() -> None:
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO submission_intents (name, sha256, path, started_at)"
                                 " VALUES ('b', '', '/x', 0)")
                started.set()
                await asyncio.sleep(10)

        task = asyncio.create_task(slow_transaction())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await db.fetchone("SELECT * FROM submission_intents") is None
        # the connection is usable afterwards
        await db.execute("INSERT INTO submission_intents (name, sha256, path, started_at)"
                         " VALUES ('c', '', '/x', 0)")
        assert len(await db.fetchall("SELECT * FROM submission_intents")) == 1
    finally:
        await db.close()


async def test_cancelling_transactions_at_any_await_never_leaves_one_open(tmp_path: Path, open_db: OpenDb) -> None:
    """Sibling parts are cancelled at arbitrary points when one fails (TaskGroup semantics)."""
    db = await open_db(tmp_path / "db")
    try:
        async def writer(n: int) -> None:
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO submission_intents (name, sha256, path, started_at)"
                                 " VALUES (?, '', '/x', 0)", (f"j{n}",))

        for delay_steps in range(6):
            tasks = [asyncio.create_task(writer(n + 100 * delay_steps)) for n in range(20)]
            for _ in range(delay_steps):
                await asyncio.sleep(0)
            for task in tasks[::2]:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        # a fresh transaction must work: no BEGIN was left open by a cancelled task
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO submission_intents (name, sha256, path, started_at)"
                             " VALUES ('last', '', '/x', 0)")
        assert await db.fetchone("SELECT id FROM submission_intents WHERE name = 'last'") is not None
    finally:
        await db.close()
