"""Daemon jobs: the record, its state machine, and ``JobStore`` over the ``jobs`` table.

A job is one archive handed to the daemon. Its state follows the notary pipeline's stages
(``uploader.events.NotaryStage``) while it runs and ends in exactly one terminal state::

    queued ──► preflight ─► hashing ─► submitting ─► uploading ─► waiting ─► fetching_log
       │            (any running state may also go back to queued: daemon restart)
       └──────────────────────────────┬─────────────────────────────────────┘
                                      ▼
                 accepted | invalid | rejected | failed | cancelled   (terminal, final)

Terminal states never change again; ``Job.move_to`` raises ``IllegalTransition`` if asked to.
A job that was running when the daemon stopped (SIGTERM or SIGKILL) keeps its running state in
SQLite and is put back in the queue on the next start; the pipeline then resumes the same
submission and multipart upload.

``Job`` objects are mutated on the event-loop thread only. ``JobStore`` runs its SQL through the
shared ``uploader.database.Database`` (aiosqlite: off the loop).
"""

from __future__ import annotations

import enum
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uploader.errors import NotarydError
from uploader.events import NotaryStage
from uploader.hashing import FileIdentity
from uploader.rate import RateMeter

from .job_options import JobOptions


class JobState(enum.StrEnum):
    QUEUED = "queued"
    PREFLIGHT = "preflight"
    HASHING = "hashing"
    SUBMITTING = "submitting"
    UPLOADING = "uploading"
    WAITING = "waiting"
    FETCHING_LOG = "fetching_log"
    ACCEPTED = "accepted"
    INVALID = "invalid"
    REJECTED = "rejected"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES

    @property
    def running(self) -> bool:
        return self in RUNNING_STATES


TERMINAL_STATES = frozenset(
    {JobState.ACCEPTED, JobState.INVALID, JobState.REJECTED, JobState.FAILED, JobState.CANCELLED}
)
RUNNING_STATES = frozenset(
    {
        JobState.PREFLIGHT,
        JobState.HASHING,
        JobState.SUBMITTING,
        JobState.UPLOADING,
        JobState.WAITING,
        JobState.FETCHING_LOG,
    }
)

# The pipeline's stages that map one-to-one onto running job states. DONE and FAILED are not
# here: the outcome (or the exception) of the run decides the terminal state.
STAGE_STATES: dict[NotaryStage, JobState] = {
    NotaryStage.PREFLIGHT: JobState.PREFLIGHT,
    NotaryStage.HASHING: JobState.HASHING,
    NotaryStage.SUBMITTING: JobState.SUBMITTING,
    NotaryStage.UPLOADING: JobState.UPLOADING,
    NotaryStage.WAITING: JobState.WAITING,
    NotaryStage.FETCHING_LOG: JobState.FETCHING_LOG,
}

# Apple's final statuses -> terminal job states.
NOTARY_STATUS_STATES: dict[str, JobState] = {
    "Accepted": JobState.ACCEPTED,
    "Invalid": JobState.INVALID,
    "Rejected": JobState.REJECTED,
}


class IllegalTransition(NotarydError):
    pass


class JobNotFound(NotarydError):
    def __init__(self, job_id: str) -> None:
        shown = job_id if len(job_id) <= 40 else job_id[:40] + "…"
        super().__init__(f"no job with id {shown!r}; `notaryd jobs` lists the known jobs")
        self.job_id = job_id


MAX_NAME_CHARS = 255


def job_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a submission (it becomes Apple's submissionName), or None."""
    if len(name) > MAX_NAME_CHARS:
        return f"'name' is {len(name)} characters long; at most {MAX_NAME_CHARS}"
    if "/" in name or "\\" in name:
        return "'name' must not contain '/' or '\\' (it is a file name, not a path)"
    if not name.isprintable() or not name.strip():
        return "'name' must be printable text (no control characters, not only spaces)"
    return None


def new_job_id() -> str:
    return uuid.uuid4().hex[:12]


@dataclass(eq=False)
class Job:
    """One archive's trip through the pipeline. Progress fields are live; others are persisted."""

    id: str
    path: Path
    name: str | None
    webhook: str | None
    skip_preflight: bool
    state: JobState
    created_at: float
    updated_at: float
    bytes_total: int = 0
    bytes_done: int = 0
    submission_id: str | None = None
    notary_status: str | None = None
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    options: JobOptions = field(default_factory=JobOptions)
    # live only (not persisted)
    bytes_hashed: int = 0
    log_path: Path | None = None
    report: str | None = None
    source: FileIdentity | None = None  # the archive as checked at POST (not after a restart)
    rate: RateMeter = field(default_factory=RateMeter, repr=False)

    def move_to(self, state: JobState, now: float | None = None) -> bool:
        """Change state; returns False when already there. Terminal states are final."""
        if state is self.state:
            return False
        if self.state.terminal:
            raise IllegalTransition(f"job {self.id} is {self.state}; it cannot become {state}")
        self.state = state
        now = time.time() if now is None else now
        self.updated_at = now
        if state.running and self.started_at is None:
            self.started_at = now
        if state.terminal:
            self.finished_at = now
            self.rate.reset()
        return True

    def snapshot(self) -> dict[str, Any]:
        """The JSON shape of the control API (see ``openapi.JOB_SCHEMA``)."""
        rate = self.rate.rate() if self.state is JobState.UPLOADING else 0.0
        remaining = max(0, self.bytes_total - self.bytes_done)
        eta = remaining / rate if rate > 0 else None
        return {
            "id": self.id,
            "path": str(self.path),
            "name": self.name,
            "webhook": self.webhook,
            "skip_preflight": self.skip_preflight,
            "state": str(self.state),
            "bytes_total": self.bytes_total,
            "bytes_done": self.bytes_done,
            "bytes_hashed": self.bytes_hashed,
            "rate_bytes_per_second": round(rate, 1),
            "eta_seconds": round(eta, 1) if eta is not None else None,
            "submission_id": self.submission_id,
            "notary_status": self.notary_status,
            "error": self.error,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            **self.options.as_dict(),
        }

    def __repr__(self) -> str:
        return (
            f"Job(id={self.id!r}, state={self.state!s}, path={str(self.path)!r}, "
            f"bytes={self.bytes_done}/{self.bytes_total})"
        )
