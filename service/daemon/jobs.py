"""Daemon jobs: the record and its state machine (``JobStore`` persists them).

A job is one archive handed to the daemon. Its state (``job_states.JobState``) is
``queued``, then the notary pipeline's stage (``NotaryStage``) while it runs, and it ends in
exactly one outcome (``JobOutcome``, from Apple's status or the run's error)::

    queued ──► preflight ─► hashing ─► submitting ─► uploading ─► waiting ─► fetching_log
       │            (any running state may also go back to queued: daemon restart)
       └──────────────────────────────┬─────────────────────────────────────┘
                                      ▼
                 accepted | invalid | rejected | failed | cancelled   (terminal, final)

The moves are the table ``job_states.JOB_LIFECYCLE``, which ``Job.move_to`` enforces:
terminal states never change again, and asking is an ``IllegalTransition``.
A job that was running when the daemon stopped (SIGTERM or SIGKILL) keeps its running state in
SQLite and is put back in the queue on the next start; the pipeline then resumes the same
submission and multipart upload.

``Job`` objects are mutated on the event-loop thread only. Their live progress is the one fold
of the pipeline's events, ``uploader.progress.Progress``; ``Job.snapshot()`` is what the API,
the event stream and the notifications show of a job (``snapshot.JobSnapshot``).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from uploader.errors import NotarydError
from uploader.lifecycle import NotaryStage
from uploader.progress import Progress
from uploader.source_file import FileIdentity

from .job_options import JobOptions
from .job_states import JobOutcome, JobState, check_job_move
from .snapshot import JobSnapshot


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


# What a snapshot shows as the job holds it, and what as its progress counts it.
_KEPT = ("id", "name", "webhook", "skip_preflight", "state", "submission_id", "notary_status",
         "error", "created_at", "updated_at", "started_at", "finished_at", "options", "worker")
_COUNTED = ("bytes_total", "bytes_done", "bytes_hashed", "retries")


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
    submission_id: str | None = None
    notary_status: str | None = None
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    options: JobOptions = field(default_factory=JobOptions)
    # live: bytes_total and bytes_done are persisted, the rest of the fold is not
    progress: Progress = field(default_factory=Progress, repr=False)
    log_path: Path | None = None
    report: str | None = None
    source: FileIdentity | None = None  # the archive as checked at POST (not after a restart)
    worker: str | None = None  # the fleet worker holding it (service/fleet); None without a fleet

    @property
    def terminal(self) -> bool:
        return isinstance(self.state, JobOutcome)

    @property
    def running(self) -> bool:
        return isinstance(self.state, NotaryStage)

    def move_to(self, state: JobState, now: float | None = None) -> bool:
        """Change state; returns False when already there. An illegal move (any move out of an
        outcome) raises ``uploader.lifecycle.IllegalTransition``."""
        if state is self.state:
            return False
        check_job_move(self.state, state, what=self.id)
        self.state = state
        now = time.time() if now is None else now
        self.updated_at = now
        if self.running and self.started_at is None:
            self.started_at = now
        if self.terminal:
            self.finished_at = now
            self.progress.settle()
        return True

    def snapshot(self) -> JobSnapshot:
        """The job as the control API shows it, at this moment."""
        progress = self.progress
        rate = progress.rate() if self.state is NotaryStage.UPLOADING else 0.0
        remaining = max(0, progress.bytes_total - progress.bytes_done)
        eta = remaining / rate if rate > 0 else None
        return JobSnapshot(
            path=str(self.path),
            rate_bytes_per_second=round(rate, 1),
            eta_seconds=round(eta, 1) if eta is not None else None,
            **{name: getattr(self, name) for name in _KEPT},
            **{name: getattr(progress, name) for name in _COUNTED},
        )

    def __repr__(self) -> str:
        return (
            f"Job(id={self.id!r}, state={self.state!s}, path={str(self.path)!r}, "
            f"bytes={self.progress.bytes_done}/{self.progress.bytes_total})"
        )
