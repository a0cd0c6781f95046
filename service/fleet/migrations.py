"""The fleet's tables as numbered migrations (see ``uploader.schema``), one list for SQLite and
PostgreSQL alike (``uploader.postgres.dialect`` says them in PostgreSQL).

Kept beside the daemon's ``jobs`` table, not in it: a lease row per claimed job
(``fleet_leases``), one heartbeat row per worker (``fleet_workers``), one token bucket per
shared budget (``rate_buckets``). Append only: never edit a released migration.
"""

from __future__ import annotations

from uploader.schema import Schema

SCHEMA = Schema("service.fleet", (
    # 1: leases, heartbeats, budgets.
    """
    CREATE TABLE fleet_leases (
        job         TEXT    PRIMARY KEY,        -- jobs.id
        worker      TEXT    NOT NULL,           -- NOTARYD_WORKER_NAME of the holder
        generation  INTEGER NOT NULL,           -- bumped by every claim: the fencing token
        lease_until REAL    NOT NULL,           -- database clock, Unix seconds
        size        INTEGER,                    -- the file's identity across hosts
        mtime_ns    INTEGER,
        sha256      TEXT
    );
    CREATE TABLE fleet_workers (
        name         TEXT PRIMARY KEY,
        started_at   REAL NOT NULL,
        heartbeat_at REAL NOT NULL
    );
    -- one unfinished job per path across the fleet: two workers queueing one build at once
    CREATE UNIQUE INDEX jobs_one_unfinished_per_path ON jobs (path)
        WHERE state NOT IN ('accepted', 'invalid', 'rejected', 'failed', 'cancelled');
    CREATE TABLE rate_buckets (
        name       TEXT PRIMARY KEY,
        tokens     REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    """,
))
