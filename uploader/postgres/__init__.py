"""The fleet store: the state database on PostgreSQL (``NOTARYD_DATABASE_URL=postgresql://…``).

Why asyncpg and a thin dialect layer of our own (not psycopg 3, not SQLAlchemy Core):

* asyncpg's ``Record`` answers ``row["name"]`` and ``row[0]`` like ``sqlite3.Row``, so every
  store reads rows the same on both engines; it speaks the binary protocol natively on the
  event loop (no thread per statement) and is the driver of pgqueuer and of most asyncio
  PostgreSQL code.
* The stores' SQL is plain and small (CRUD, a few ``IN`` lists): a ~100-line rewrite
  (``dialect``) of the handful of SQLite-isms keeps one text per statement and one numbered
  migration list per package for both engines, where SQLAlchemy would mean rewriting every store
  (and the helpers refactoring them) into its expression language, for features we do not use.
* Surviving a restart without losing or duplicating a write needs control of every transaction
  boundary (``database`` replays unfinished transactions and asks the server whether an
  unanswered ``COMMIT`` committed), which a thin layer gives directly.
"""

from __future__ import annotations

from pathlib import Path

from uploader.database import Database, StateError
from uploader.redaction import redact_url

SCHEMES = ("postgresql://", "postgres://")


def database_url(raw: object) -> str:
    """``NOTARYD_DATABASE_URL`` checked: a postgresql:// URL (shown without its password)."""
    text = str(raw).strip()
    if text and not text.startswith(SCHEMES):
        raise ValueError("must be empty (the SQLite file in the state directory) or a "
                         f"postgresql://… URL, got {redact_url(text)!r}")
    return text


async def open_database(path: Path, url: str = "") -> Database:
    """The state database: the SQLite file ``path`` when ``url`` is empty (the default),
    else the PostgreSQL database ``url`` names (the fleet store)."""
    if not url:
        return await Database.open(path)
    if not url.startswith(SCHEMES):
        raise StateError("NOTARYD_DATABASE_URL must be empty (the SQLite file in the state "
                         "directory) or a postgresql://… URL")
    from uploader.postgres.database import PostgresDatabase  # asyncpg only when asked for
    return await PostgresDatabase.open(url)
