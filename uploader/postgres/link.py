"""The one connection to PostgreSQL: made, lost, made again with back-off, one log line per change.

``connection()`` hands out the live connection or makes one, backing off through the project's
one retry core (``uploader.retry.Retrier``) while the server is unreachable or starting up, for at
most ``give_up_seconds`` (then ``StateError``). An answer that no retry can change (wrong
password, no such database) is a ``StateError`` at once. Logs: one warning when the server is
lost, one info line when it is back, never the URL's password.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import asyncpg

from uploader import redaction
from uploader.database import StateError
from uploader.retry import Pace, Retrier, RetryPolicy

log = logging.getLogger("notaryd.postgres")

# Failures that mean "the connection or the server is gone", not "the statement is wrong".
LOST: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,        # 08xxx, ConnectionDoesNotExistError
    asyncpg.exceptions.OperatorInterventionError,  # 57xxx: admin shutdown, crash, cannot connect now
    asyncpg.exceptions.InterfaceError,      # "connection is closed" (asyncpg's own check)
    asyncpg.exceptions.InternalClientError,  # a protocol cut mid-message ("cannot switch to state")
)
POLICY = RetryPolicy(initial_delay_seconds=0.1, max_delay_seconds=5.0)


class Link:
    def __init__(self, url: str, *, give_up_seconds: float = 300.0, first_give_up_seconds: float = 30.0,
                 retrier: Retrier | None = None) -> None:
        self._url = url
        self.where = describe(url)
        self.lost = LOST
        self._conn: asyncpg.Connection | None = None
        self._give_up = give_up_seconds
        self._first_give_up = first_give_up_seconds
        self._retrier = retrier or Retrier(POLICY)
        self._down_since: float | None = None
        self._closed = False
        self._listeners: list[tuple[str, Callable[..., object]]] = []  # made again on reconnect
        self._connecting = asyncio.Lock()  # one reconnect at a time: a second would leak the first

    async def connection(self, *, first: bool = False) -> asyncpg.Connection:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        async with self._connecting:
            return await self._reconnect(first)

    async def _reconnect(self, first: bool) -> asyncpg.Connection:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn  # another task connected while this one waited
        if self._closed:
            raise StateError(f"the database {self.where} was closed by this process")
        started = time.monotonic()
        limit = self._first_give_up if first else self._give_up

        def decide(error: Exception, retry_number: int) -> float:
            if not isinstance(error, LOST):
                raise StateError(f"cannot use the database {self.where}: "
                                 f"{redaction.redact(str(error))}") from None
            self._note_down(error)
            if time.monotonic() - started > limit:
                raise StateError(f"the database {self.where} has been unreachable for "
                                 f"{limit:.0f} s ({redaction.redact(str(error))})") from None
            return self._retrier.delay(retry_number)

        conn: asyncpg.Connection = await self._retrier.run(self._connect, decide)
        self._conn = conn
        for channel, callback in self._listeners:
            await conn.add_listener(channel, callback)
        if self._down_since is not None:
            log.info("PostgreSQL %s reachable again after %.1f s", self.where,
                     time.monotonic() - self._down_since)
            self._down_since = None
        return self._conn

    async def _connect(self) -> asyncpg.Connection:
        conn: asyncpg.Connection = await asyncpg.connect(self._url, timeout=10, command_timeout=60,
                                                          server_settings={"application_name": "notaryd"})
        return conn

    async def listen(self, channel: str, callback: Callable[..., object]) -> None:
        """``LISTEN channel`` on this connection and every one made after it (a notification
        sent while no connection is up is lost: listeners poll as well)."""
        self._listeners.append((channel, callback))
        await (await self.connection()).add_listener(channel, callback)

    def discard(self) -> None:
        """A statement on the connection was cancelled mid-way (a job cancelled, a shutdown):
        asyncpg is still cancelling it, so the next statement would find the connection busy.
        Cut it quietly (nothing was lost); the next ``connection()`` makes a new one."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    async def dropped(self, error: BaseException) -> None:
        """The connection failed with ``error`` (one of ``LOST``): drop it; the next
        ``connection()`` makes a new one."""
        self._note_down(error)
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    def _note_down(self, error: BaseException) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("PostgreSQL %s unreachable (%s); reconnecting with back-off", self.where,
                        redaction.redact(str(error) or type(error).__name__))

    async def outcome(self, xid: str) -> str:
        """Whether transaction ``xid``, whose COMMIT got no answer, committed: "committed" or
        "aborted" (asks again while the server still runs it)."""
        async def ask() -> str:
            conn = await self.connection()
            return str(await conn.fetchval("SELECT pg_xact_status($1::text::xid8)", xid))

        async def reconnect(error: Exception, _failures: int) -> float:
            if not isinstance(error, LOST):
                raise error
            await self.dropped(error)
            return 0.0  # connection() backs off by itself while the server is away

        return await self._retrier.poll(ask, lambda status: status != "in progress",
                                        Pace(0.05, 0.05, spread=0.0), reconnect)

    async def close(self) -> None:
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            # a query cancelled meanwhile left asyncpg a task that asks the server to stop it;
            # close() would cancel it without waiting, and the loop would end with it pending
            pending = [task for task in getattr(conn, "_cancellations", ()) if not task.done()]
            if pending:
                await asyncio.wait(pending, timeout=5)
            with contextlib.suppress(*LOST):
                await conn.close(timeout=5)
            if not conn.is_closed():  # close() refused (a cancelled query still in progress): cut it
                conn.terminate()


def describe(url: str) -> str:
    """The URL as logs may show it: no password, no query values; the password is registered
    with ``redaction`` so that no later log line shows it either."""
    with contextlib.suppress(ValueError):
        redaction.register_secret(urlsplit(url).password)
    return redaction.redact_url(url)
