"""The state database on PostgreSQL (``NOTARYD_DATABASE_URL=postgresql://…``): the fleet store.

Same interface as ``uploader.database.Database`` (it is one), so every store runs unchanged on
either engine: statements are the stores' own SQLite-dialect SQL, rewritten by ``dialect``.
One connection per process, serialised by a lock like the SQLite one.

Losing the server (a restart, a minute unreachable) loses and duplicates nothing:

* a read is simply run again on a new connection;
* every write runs in a transaction (a lone ``execute`` in one of its own) whose statements and
  their results are kept (``_Journal``) until it commits. If the connection drops before
  ``COMMIT`` the server has rolled everything back: the statements are replayed on a new
  connection and each must give the result the caller already saw (an insert keeps the id it
  was given), else ``StateError`` — so the caller's decisions stay true. If it drops during
  ``COMMIT`` the outcome is asked of the server (``pg_xact_status`` of the transaction id
  taken before): committed means done, aborted means replay.

Reconnects back off through ``uploader.retry.Retrier`` and log one line when the server is lost
and one when it is back. The URL's password never reaches a log (``redaction``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import asyncpg

from uploader.database import Database, StateError, Transaction
from uploader.migrations import SCHEMA as LIBRARY_SCHEMA
from uploader.postgres import dialect
from uploader.postgres.link import Link
from uploader.schema import Schema

log = logging.getLogger("notaryd.postgres")

_VERSIONS = ("CREATE TABLE IF NOT EXISTS schema_versions "
             "(package TEXT PRIMARY KEY, version BIGINT NOT NULL)")
_MIGRATION_LOCK = 0x6E6F7461  # pg_advisory_xact_lock key: two workers migrate one at a time
_INSERT = re.compile(r"^\s*INSERT\s+(?:OR\s+\w+\s+)?INTO\s+(\w+)", re.IGNORECASE)


class PostgresDatabase(Database):
    engine = "postgresql"  # what SQL beyond the shared dialect may say (``FOR UPDATE SKIP LOCKED``)

    def __init__(self, link: Link) -> None:  # no super().__init__: it wants a SQLite connection
        self._link = link
        self._lock = asyncio.Lock()
        self._current: set[str] = set()
        self._identity: frozenset[str] = frozenset()  # tables whose ``id`` the server assigns
        self.path = Path(link.where)

    @classmethod
    async def open(cls, url: str) -> PostgresDatabase:  # type: ignore[override]
        """Connect (backing off while the server starts) and bring the library's tables up to
        date; a wrong URL, password or database name is one ``StateError`` line."""
        db = cls(Link(url))
        await db._link.connection(first=True)
        try:
            await db.require(LIBRARY_SCHEMA)
        except BaseException:
            await db.close()
            raise
        return db

    async def close(self) -> None:
        await self._link.close()

    async def require(self, schema: Schema) -> None:
        if schema.package in self._current:
            return
        async with self._lock:
            while schema.package not in self._current:
                try:
                    await self._apply(schema)
                except self._link.lost as error:
                    await self._link.dropped(error)

    async def _apply(self, schema: Schema) -> None:
        """``schema``'s pending migrations in one transaction, under an advisory lock; a lost
        connection rolls all back, and running it again re-reads the versions."""
        conn = await self._link.connection()
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute(_VERSIONS)
            current = await conn.fetchval(
                "SELECT version FROM schema_versions WHERE package = $1", schema.package) or 0
            if current > schema.version:
                raise StateError(
                    f"the database {self._link.where} was written by a newer notaryd (schema "
                    f"version {current} of {schema.package}; this notaryd knows versions up to "
                    f"{schema.version}): upgrade notaryd on every worker")
            for number, script in schema.pending(current):
                for statement in dialect.translate_script(script):
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_versions (package, version) VALUES ($1, $2) ON CONFLICT"
                    " (package) DO UPDATE SET version = EXCLUDED.version", schema.package, number)
            rows = await conn.fetch(
                "SELECT table_name FROM information_schema.columns WHERE column_name = 'id'"
                " AND is_identity = 'YES' AND table_schema = current_schema()")
        self._identity = frozenset(str(row[0]) for row in rows)
        self._current.add(schema.package)

    # -- statements outside a transaction -------------------------------------------------

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """One statement in a transaction of its own (replayed if the connection drops)."""
        async with self.transaction() as tx:
            return await tx.execute(sql, params)

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Any:
        rows = await self._read(sql, tuple(params), one=True)
        return rows[0] if rows else None

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        return await self._read(sql, tuple(params), one=False)

    async def _read(self, sql: str, params: tuple[Any, ...], *, one: bool) -> list[Any]:
        async with self._lock:
            while True:
                conn = await self._link.connection()
                try:
                    if one:
                        row = await conn.fetchrow(dialect.translate(sql), *params)
                        return [] if row is None else [row]
                    return list(await conn.fetch(dialect.translate(sql), *params))
                except self._link.lost as error:
                    await self._link.dropped(error)
                except asyncio.CancelledError:
                    self._link.discard()
                    raise

    # -- transactions --------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """``BEGIN`` … ``COMMIT`` that survives a lost connection (see the module doc); rolls
        back on any exception raised by the body, cancellation included."""
        async with self._lock:
            journal = _Journal(self)
            await journal.begin()
            try:
                yield journal
            except BaseException:
                await _to_the_end(journal.rollback())
                raise
            await _to_the_end(journal.commit())

    async def listen(self, channel: str, callback: Callable[[str], object]) -> None:
        """``callback(payload)`` for every ``NOTIFY channel``, across reconnects."""
        async with self._lock:
            await self._link.listen(channel, lambda _conn, _pid, _channel, payload: callback(payload))

    def insert_sql(self, sql: str) -> tuple[str, bool]:
        """``sql`` translated; for an insert into a table with a server-assigned ``id``, with
        ``RETURNING id`` (the ``lastrowid`` SQLite gives), and True."""
        translated = dialect.translate(sql)
        match = _INSERT.match(sql)
        if match is not None and match.group(1) in self._identity and "RETURNING" not in sql.upper():
            return translated + " RETURNING id", True
        return translated, False


async def _to_the_end(operation: Awaitable[None]) -> None:
    """Run ``operation`` (a COMMIT or ROLLBACK) to its end even if this task is cancelled
    meanwhile, then let the cancel through. The caller holds the lock all that time: a shield
    alone would let the lock go while the statement still runs, and the next statement would
    find the connection busy ("another operation is in progress")."""
    task = asyncio.ensure_future(operation)
    interrupted = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():
                raise
            interrupted = True
    task.result()
    if interrupted:
        raise asyncio.CancelledError


class _Journal(Transaction):
    """A transaction's statements and their results, kept until it commits so that they can be
    replayed on a new connection (``PostgresDatabase`` module doc)."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db
        self._link = db._link
        self._conn: Any = None
        self._xid = ""
        self._steps: list[tuple[str, str, tuple[Any, ...], Any]] = []

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        result: int = await self._step("execute", sql, tuple(params))
        return result

    async def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        await self._step("many", sql, tuple(tuple(r) for r in rows))

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Any:
        rows = await self._step("fetch", sql, tuple(params))
        return rows[0] if rows else None

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        rows: list[Any] = await self._step("fetch", sql, tuple(params))
        return rows

    async def begin(self) -> None:
        while True:
            try:
                await self._begin()
                return
            except self._link.lost as error:
                await self._link.dropped(error)

    async def _begin(self) -> None:
        self._conn = await self._link.connection()
        await self._conn.execute("BEGIN")
        self._xid = str(await self._conn.fetchval("SELECT pg_current_xact_id()::text"))

    async def _step(self, kind: str, sql: str, params: tuple[Any, ...]) -> Any:
        while True:
            try:
                result = await self._perform(kind, sql, params, None)
            except self._link.lost as error:
                await self._link.dropped(error)
                await self._replay()
                continue
            except asyncio.CancelledError:
                self._link.discard()  # the transaction dies with the connection: no ROLLBACK needed
                raise
            except asyncpg.IntegrityConstraintViolationError as error:
                # the stores know one constraint error, whichever engine refused the row
                raise sqlite3.IntegrityError(str(error)) from error
            self._steps.append((kind, sql, params, result))
            return result

    async def _perform(self, kind: str, sql: str, params: tuple[Any, ...], known: Any) -> Any:
        """Run one statement; ``known``: the id a replayed insert must keep."""
        if kind == "fetch":
            return [tuple(row) if known is not None else row
                    for row in await self._conn.fetch(dialect.translate(sql), *params)]
        if kind == "many":
            await self._conn.executemany(dialect.translate(sql), params)
            return None
        translated, returns_id = self._db.insert_sql(sql)
        if returns_id:
            if known is not None:
                translated, params = dialect.insert_with_id(translated, len(params)), (*params, known)
            return int(await self._conn.fetchval(translated, *params))
        status = await self._conn.execute(translated, *params)
        count = status.rsplit(" ", 1)[-1]
        if status.startswith("INSERT"):
            return 0
        return int(count) if count.isdigit() else -1  # -1: no row count, as sqlite3 says

    async def _replay(self) -> None:
        """The transaction so far, again on a new connection; each step must give what the
        caller saw the first time."""
        while True:
            try:
                await self._begin()
                for kind, sql, params, seen in self._steps:
                    again = await self._perform(kind, sql, params, seen if kind != "fetch" else 1)
                    if kind == "fetch":
                        seen = [tuple(row) for row in seen]
                    if again != seen:
                        raise StateError(
                            f"the database {self._link.where} changed while the connection to it"
                            " was lost, and an unfinished write could not be made again as it"
                            " was: the job is stopped rather than write over another worker's")
                return
            except self._link.lost as error:
                await self._link.dropped(error)

    async def commit(self) -> None:
        while True:
            try:
                await self._conn.execute("COMMIT")
                return
            except self._link.lost as error:
                await self._link.dropped(error)
            if await self._link.outcome(self._xid) == "committed":
                return
            await self._replay()

    async def rollback(self) -> None:
        with contextlib.suppress(*self._link.lost):
            if self._conn is not None and not self._conn.is_closed():
                await self._conn.execute("ROLLBACK")

