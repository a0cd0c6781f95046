"""The daemon's tables as numbered migrations (see ``uploader.schema``): ``jobs`` (``job_store``),
``notifications`` (``notify``: job-end notifications not yet delivered).

Applied by ``JobStore`` before its first statement. Append only: never edit a released migration.
"""

from __future__ import annotations

from typing import Self

from uploader.database import Database
from uploader.schema import Schema

SCHEMA = Schema("service.daemon", (
    # 1: one row per job submitted to the daemon.
    """
    CREATE TABLE jobs (
        id             TEXT PRIMARY KEY,
        path           TEXT    NOT NULL,
        name           TEXT,
        webhook        TEXT,
        skip_preflight INTEGER NOT NULL DEFAULT 0,
        state          TEXT    NOT NULL,
        submission_id  TEXT,
        notary_status  TEXT,
        error          TEXT,
        bytes_total    INTEGER NOT NULL DEFAULT 0,
        bytes_done     INTEGER NOT NULL DEFAULT 0,
        created_at     REAL    NOT NULL,
        updated_at     REAL    NOT NULL,
        started_at     REAL,
        finished_at    REAL
    );
    """,
    # 2: a job's last-mile options (job_options), JSON; NULL = defaults.
    "ALTER TABLE jobs ADD COLUMN options TEXT",
    # 3: job-end notifications until delivered (or refused, or given up): a restart resends
    # them. ``document`` is the JSON body without ``sent_at``; ``attempts`` bounds the retries
    # across restarts.
    """
    CREATE TABLE notifications (
        delivery   TEXT    PRIMARY KEY,
        job        TEXT    NOT NULL,
        document   TEXT    NOT NULL,
        attempts   INTEGER NOT NULL DEFAULT 0,
        created_at REAL    NOT NULL
    );
    """,
), released={1: 1, 2: 1, 3: 2})


class DaemonStore:
    """A store over the daemon's tables: make one with ``await Store.open(db)``, which brings the
    tables up to date first (``SCHEMA``). Safe from many tasks of one loop (the Database
    serialises)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @classmethod
    async def open(cls, db: Database) -> Self:
        await db.require(SCHEMA)
        return cls(db)
