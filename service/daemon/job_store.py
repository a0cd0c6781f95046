"""``JobStore``: the daemon's jobs in the ``jobs`` table, through the shared ``Database``.

The table is the daemon's own (``migrations``): the store brings it up to date before its first
statement. What the library records (submissions) it asks the library's stores for.
Safe from many tasks of one loop: the Database serialises its SQL and runs it off the loop.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from uploader.notary.store import SubmissionStore
from uploader.progress import Progress

from .job_options import JobOptions
from .job_states import JobOutcome, parse_job_state
from .jobs import Job
from .migrations import DaemonStore

# The columns a job's run changes; the others are written once, at insert.
_MUTABLE = (
    "state", "submission_id", "notary_status", "error", "bytes_total", "bytes_done",
    "updated_at", "started_at", "finished_at",
)
_COLUMNS = ("id", "path", "name", "webhook", "skip_preflight", *_MUTABLE, "created_at", "options")
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM jobs"


class JobStore(DaemonStore):
    """CRUD over the ``jobs`` table (``await JobStore.open(db)``; see ``DaemonStore``)."""

    async def insert(self, job: Job) -> None:
        values = _values(job)
        await self._db.execute(
            f"INSERT INTO jobs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
            [values[column] for column in _COLUMNS],
        )

    async def save(self, job: Job) -> None:
        """Write every mutable column of ``job``."""
        await self._db.execute(*update_statement(job))

    async def get(self, job_id: str) -> Job | None:
        row = await self._db.fetchone(f"{_SELECT} WHERE id = ?", (job_id,))
        return _job(row) if row is not None else None

    async def unfinished(self) -> list[Job]:
        """Every job not in a terminal state, oldest first (the order they resume in)."""
        placeholders = ", ".join("?" for _ in JobOutcome)
        rows = await self._db.fetchall(
            f"{_SELECT} WHERE state NOT IN ({placeholders}) "
            "ORDER BY created_at, id",
            [str(s) for s in JobOutcome],
        )
        return [_job(r) for r in rows]

    async def last_finished_at(self, outcome: JobOutcome) -> float | None:
        """When a job last ended with ``outcome`` (Unix seconds), or None if none ever did."""
        row = await self._db.fetchone(
            "SELECT MAX(finished_at) AS at FROM jobs WHERE state = ?", (str(outcome),))
        return float(row["at"]) if row is not None and row["at"] is not None else None

    async def recent(self, limit: int = 200) -> list[Job]:
        """The newest ``limit`` jobs, newest first."""
        rows = await self._db.fetchall(
            f"{_SELECT} ORDER BY created_at DESC, id DESC LIMIT ?", (limit,)
        )
        return [_job(r) for r in rows]

    async def log_path(self, submission_id: str) -> Path | None:
        """Where the pipeline saved the notary log of ``submission_id``."""
        return await SubmissionStore(self._db).log_path(submission_id)


def update_statement(job: Job) -> tuple[str, list[Any]]:
    """The UPDATE that writes every mutable column of ``job`` (and its parameters)."""
    values = _values(job)
    return (f"UPDATE jobs SET {', '.join(f'{column} = ?' for column in _MUTABLE)} WHERE id = ?",
            [*(values[column] for column in _MUTABLE), job.id])


def _values(job: Job) -> dict[str, Any]:
    """The job as the table stores it, by column."""
    return {
        "id": job.id,
        "path": str(job.path),
        "name": job.name,
        "webhook": job.webhook,
        "skip_preflight": int(job.skip_preflight),
        "state": str(job.state),
        "submission_id": job.submission_id,
        "notary_status": job.notary_status,
        "error": job.error,
        "bytes_total": job.progress.bytes_total,
        "bytes_done": job.progress.bytes_done,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "options": job.options.to_db(),
    }


def _job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"],
        path=Path(row["path"]),
        name=row["name"],
        webhook=row["webhook"],
        skip_preflight=bool(row["skip_preflight"]),
        state=parse_job_state(row["state"]),
        submission_id=row["submission_id"],
        notary_status=row["notary_status"],
        error=row["error"],
        progress=Progress(bytes_total=row["bytes_total"], bytes_done=row["bytes_done"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        options=JobOptions.from_db(row["options"]),
    )
