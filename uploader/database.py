"""Opening the SQLite state database: 0600 file, WAL, foreign keys, each package's migrations.

aiosqlite runs every statement on its own worker thread, so SQLite never blocks the event loop.
One ``Database`` (one connection) is shared by all stores of a process. A lock keeps statements of
other tasks out of an open transaction: ``transaction()`` holds it and yields a ``Transaction``
whose statements run inside; plain ``execute``/``fetch*`` calls wait for it. Safe to use from many
tasks of one event loop; not from several loops or processes at once (WAL lets a second process
read, e.g. ``notaryd jobs`` while the daemon runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import aiosqlite

from uploader import state_dir
from uploader.errors import NotarydError
from uploader.migrations import SCHEMA as LIBRARY_SCHEMA
from uploader.schema import LAYOUT, RELEASED, VERSIONS_TABLE, Schema

# SQLite result codes (primary) that mean "this file is not a usable database".
_UNREADABLE = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
_DISK_FULL_MIN_FREE = 64 * 1024 * 1024  # room for the WAL and a checkpoint, at the least


class StateError(NotarydError):
    """The state database cannot be used; the message names the file and what to do."""


class CorruptDatabaseError(StateError):
    def __init__(self, path: Path, detail: str) -> None:
        detail = " ".join(detail.replace("*", "").split())[:200]  # quick_check lists many lines
        super().__init__(
            f"{path} is damaged and cannot be used ({detail}). Run `notaryd state set-aside` to "
            "move it (and its -wal/-shm files) aside and start with an empty state; submissions "
            "in progress are then not resumed"
        )
        self.path = path


class DiskFullError(StateError):
    def __init__(self, path: Path) -> None:
        needed = max(_DISK_FULL_MIN_FREE, 2 * _database_bytes(path))
        super().__init__(state_dir.disk_full_message(path, needed))


class Database:
    def __init__(self, connection: aiosqlite.Connection, path: Path) -> None:
        self._conn = connection
        self._lock = asyncio.Lock()
        self._current: set[str] = set()  # packages whose migrations have all run
        self.path = path

    @classmethod
    async def open(cls, path: Path) -> Database:
        """Open (creating if needed) the state database; every failure is one ``StateError`` line.

        Refuses a database written by a newer notaryd and a corrupt one (``notaryd state
        set-aside`` moves that aside on request; nothing here ever moves or deletes it).
        """
        path = Path(path)
        await asyncio.to_thread(_create_private, path)
        try:
            conn = await aiosqlite.connect(path, isolation_level=None)
        except sqlite3.Error as error:
            raise _open_error(error, path) from None
        conn.row_factory = sqlite3.Row
        db = cls(conn, path)
        try:
            await conn.execute("PRAGMA busy_timeout=10000")
            await db._check_integrity()
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute("PRAGMA synchronous=NORMAL")
            await conn.execute("PRAGMA foreign_keys=ON")
            await db._adopt_layout()
            await db._apply(LIBRARY_SCHEMA)
        except sqlite3.Error as error:
            await conn.close()
            raise _open_error(error, path) from None
        except BaseException:
            await conn.close()
            raise
        await asyncio.to_thread(_tighten_journal, path)
        return db

    async def _check_integrity(self) -> None:
        try:
            async with self._conn.execute("PRAGMA quick_check(1)") as cur:
                row = await cur.fetchone()
        except sqlite3.DatabaseError as error:
            if _code(error) in _UNREADABLE:
                raise CorruptDatabaseError(self.path, str(error)) from None
            raise
        if row is None or str(row[0]) != "ok":
            raise CorruptDatabaseError(self.path, str(row[0]) if row else "no integrity answer")

    async def require(self, schema: Schema) -> None:
        """Bring another package's tables up to date before its first use (once per Database).

        Refused with both version numbers when a newer notaryd has moved them further."""
        if schema.package in self._current:
            return
        async with self._lock, self._translated():
            if schema.package not in self._current:
                await self._apply(schema)

    async def _adopt_layout(self) -> None:
        """Start per-package versions, on a new database or one of the first release."""
        if await self._layout() == LAYOUT:
            return
        async with self._begun():  # read again under the write lock: another process may be here
            version = await self._layout()
            if version < LAYOUT:
                await self._conn.execute(VERSIONS_TABLE)
                if version:
                    await self._conn.execute("INSERT INTO schema_versions (package, version) "
                                             "VALUES (?, ?)", (RELEASED, version))
                await self._conn.execute(f"PRAGMA user_version = {LAYOUT}")

    async def _layout(self) -> int:
        async with self._conn.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        version = int(row[0]) if row else 0
        if version > LAYOUT:
            raise self._newer(f"schema version {version}", LAYOUT)
        return version

    async def _apply(self, schema: Schema) -> None:
        """Run ``schema``'s pending migrations, all in one transaction: a crash leaves the
        package at its old version or its new one."""
        if await self._steps(schema):
            async with self._begun():
                for number, script in await self._steps(schema):  # again, under the write lock
                    # executescript() would COMMIT first; run statements one by one.
                    for statement in _split_sql(script):
                        await self._conn.execute(statement)
                    await self._conn.execute(
                        "INSERT OR REPLACE INTO schema_versions (package, version) VALUES (?, ?)",
                        (schema.package, number),
                    )
        self._current.add(schema.package)

    async def _steps(self, schema: Schema) -> list[tuple[int, str]]:
        """The migrations ``schema`` still needs, numbered; refuses a newer version."""
        async with self._conn.execute(
            "SELECT package, version FROM schema_versions WHERE package IN (?, ?)",
            (schema.package, RELEASED),
        ) as cur:
            versions = {str(row[0]): int(row[1]) for row in await cur.fetchall()}
        current = versions.get(schema.package, schema.released.get(versions.get(RELEASED, 0), 0))
        if current > schema.version:
            raise self._newer(f"schema version {current} of {schema.package}", schema.version)
        if schema.package not in versions and current == schema.version:
            return [(current, "")]  # record the version a first-release database implies
        return schema.pending(current)

    def _newer(self, found: str, known: int) -> StateError:
        return StateError(
            f"{self.path} was written by a newer notaryd ({found}; this notaryd knows versions "
            f"up to {known}): upgrade notaryd, or set NOTARYD_STATE_DIR to another directory"
        )

    async def close(self) -> None:
        await self._conn.close()

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Run one statement (autocommit); returns lastrowid for INSERT, else the rowcount."""
        async with self._lock, self._translated():
            return await Transaction(self._conn).execute(sql, params)

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        async with self._lock, self._translated():
            return await Transaction(self._conn).fetchone(sql, params)

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        async with self._lock, self._translated():
            return await Transaction(self._conn).fetchall(sql, params)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; rolls back on any exception, cancellation included.

        aiosqlite runs statements in order on its thread even when the awaiting task was
        cancelled, so a cancelled BEGIN still happens: the ROLLBACK queued after it always
        closes it (and is harmless when nothing was begun). A failed COMMIT (disk full) is
        rolled back too, so the connection is never left inside a transaction.
        """
        async with self._lock, self._translated(), self._begun():
            yield Transaction(self._conn)

    @contextlib.asynccontextmanager
    async def _begun(self) -> AsyncIterator[None]:
        try:
            await self._conn.execute("BEGIN IMMEDIATE")
            yield
            await asyncio.shield(self._conn.execute("COMMIT"))
        except BaseException:
            await asyncio.shield(self._rollback())
            raise

    async def _rollback(self) -> None:
        # SQLite has already rolled back after SQLITE_FULL and some I/O errors: then ROLLBACK
        # says "no transaction is active", which must not replace the real cause.
        with contextlib.suppress(sqlite3.OperationalError):
            await self._conn.execute("ROLLBACK")

    @contextlib.asynccontextmanager
    async def _translated(self) -> AsyncIterator[None]:
        """sqlite3 errors about the disk or the file become one ``StateError`` line."""
        try:
            yield
        except sqlite3.Error as error:
            translated = _state_error(error, self.path)
            if translated is None:
                raise
            raise translated from error

    async def schema_versions(self) -> dict[str, int]:
        """Each package's schema version, as recorded (see ``uploader.schema``)."""
        rows = await self.fetchall("SELECT package, version FROM schema_versions")
        return {str(row[0]): int(row[1]) for row in rows}


class Transaction:
    """Statements inside an open transaction (see ``Database.transaction``)."""

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._conn = connection

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        async with self._conn.execute(sql, tuple(params)) as cur:
            if sql.lstrip().upper().startswith("INSERT"):
                return cur.lastrowid or 0
            return cur.rowcount

    async def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        await self._conn.executemany(sql, [tuple(r) for r in rows])

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        async with self._conn.execute(sql, tuple(params)) as cur:
            row: sqlite3.Row | None = await cur.fetchone()
            return row

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        async with self._conn.execute(sql, tuple(params)) as cur:
            return list(await cur.fetchall())


def _create_private(path: Path) -> None:
    """The state dir made private, then the database file created 0600 before SQLite does:
    it holds temporary S3 credentials."""
    state_dir.prepare(path.parent)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        os.close(fd)
        os.chmod(path, 0o600)
    except OSError as error:
        raise state_dir.unusable(path.parent, error) from None


def _tighten_journal(path: Path) -> None:
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(f"{path}{suffix}", 0o600)


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements (a ';' inside a comment or literal does not split)."""
    statements, pending = [], ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                statements.append(pending)
            pending = ""
    return statements


def _code(error: sqlite3.Error) -> int | None:
    code = getattr(error, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF  # primary code of an extended one


def _state_error(error: sqlite3.Error, path: Path) -> StateError | None:
    """The one-line error for a sqlite3 error about the file or disk, else None."""
    code = _code(error)
    text = str(error)
    if code == sqlite3.SQLITE_FULL or "disk is full" in text:
        return DiskFullError(path)
    if code == sqlite3.SQLITE_IOERR:
        free = state_dir.free_bytes(path.parent)
        if free is not None and free < _DISK_FULL_MIN_FREE:
            return DiskFullError(path)  # a WAL or -shm write that failed for want of space
    if code in _UNREADABLE:
        return CorruptDatabaseError(path, text)
    if code == sqlite3.SQLITE_READONLY or code == sqlite3.SQLITE_CANTOPEN or "readonly" in text:
        return StateError(
            f"the state database {path} cannot be written ({text}): the state directory "
            f"{path.parent} is read-only for this user; make it and its files writable "
            "(chmod u+rwX) or set NOTARYD_STATE_DIR to a writable directory"
        )
    if code == sqlite3.SQLITE_IOERR:
        return StateError(f"the state database {path} cannot be read or written ({text}); "
                          "check the disk holding it")
    return None


def _open_error(error: sqlite3.Error, path: Path) -> StateError:
    return _state_error(error, path) or StateError(
        f"cannot open the state database {path} ({error}); check the file, or run "
        "`notaryd state set-aside` to start with an empty state"
    )


def _database_bytes(path: Path) -> int:
    total = 0
    for suffix in ("", "-wal"):
        with contextlib.suppress(OSError):
            total += os.stat(f"{path}{suffix}").st_size
    return total
