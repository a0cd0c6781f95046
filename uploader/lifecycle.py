"""Every lifecycle in notaryd as data: the states, and the moves allowed between them.

Three things have a lifecycle, each persisted by the store that owns it:

* an **upload** (``UploadState``; ``uploader.upload_state.UploadStore``): one S3 multipart upload;
* a **submission** (``SubmissionState``; ``uploader.notary.store.SubmissionStore``): our record of
  one notary submission, whose verdict is Apple's ``NotaryStatus``;
* a daemon **job** (``JobState``; ``service.daemon.jobs.Job.move_to``, saved by ``JobStore``):
  one archive's trip through the pipeline.
  A job's state is not a type of its own: it is ``QUEUED``, or the pipeline stage it is in
  (``NotaryStage``), or how it ended (``JobOutcome``, from Apple's status or the run's error).

A store asked for a move its table does not hold raises ``IllegalTransition``: that is a bug in
the caller, never an input error, so it is not a ``NotarydError`` and no user is meant to see it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

S = TypeVar("S", bound=enum.Enum)


class IllegalTransition(RuntimeError):
    """A store was asked for a move its lifecycle table does not allow (a bug)."""


@dataclass(frozen=True)
class Lifecycle(Generic[S]):
    """A transition table: ``moves[a]`` is every state ``a`` may become. Staying put is allowed."""

    name: str
    moves: Mapping[S, frozenset[S]]

    def allows(self, current: S, new: S) -> bool:
        return new is current or new in self.moves.get(current, frozenset())

    def check(self, current: S, new: S, *, what: str = "") -> None:
        if not self.allows(current, new):
            label = f"{self.name} {what}".strip()
            raise IllegalTransition(f"{label} is {current.value}; it cannot become {new.value}")

    @property
    def terminal(self) -> frozenset[S]:
        return frozenset(state for state, nexts in self.moves.items() if not nexts)


# -- uploads ---------------------------------------------------------------------------------


class UploadState(enum.StrEnum):
    PLANNED = "planned"
    HASHING = "hashing"  # reported in events only: hashing happens before the row exists
    UPLOADING = "uploading"
    COMPLETING = "completing"
    COMPLETED = "completed"
    FAILED = "failed"
    ABORTED = "aborted"


_U = UploadState
UPLOAD_LIFECYCLE: Lifecycle[UploadState] = Lifecycle(
    "upload",
    {
        _U.HASHING: frozenset({_U.PLANNED}),
        # forget_parts sends an upload back to planned when S3 no longer knows its upload id
        _U.PLANNED: frozenset({_U.UPLOADING, _U.FAILED, _U.ABORTED}),
        _U.UPLOADING: frozenset({_U.PLANNED, _U.COMPLETING, _U.FAILED, _U.ABORTED}),
        # a run that died after sending Complete resumes by checking its parts again
        _U.COMPLETING: frozenset({_U.PLANNED, _U.UPLOADING, _U.COMPLETED, _U.FAILED, _U.ABORTED}),
        # failing aborts the multipart upload, so the next run starts a new upload (a new row)
        _U.FAILED: frozenset(),
        _U.COMPLETED: frozenset(),
        _U.ABORTED: frozenset(),
    },
)


# -- submissions -----------------------------------------------------------------------------


class SubmissionState(enum.StrEnum):
    CREATED = "created"
    UPLOADING = "uploading"
    UPLOADED = "uploaded"
    DONE = "done"
    ABANDONED = "abandoned"


_S = SubmissionState
SUBMISSION_LIFECYCLE: Lifecycle[SubmissionState] = Lifecycle(
    "submission",
    {
        _S.CREATED: frozenset({_S.UPLOADING, _S.UPLOADED, _S.DONE, _S.ABANDONED}),
        _S.UPLOADING: frozenset({_S.UPLOADED, _S.DONE, _S.ABANDONED}),
        _S.UPLOADED: frozenset({_S.DONE, _S.ABANDONED}),
        _S.DONE: frozenset(),
        _S.ABANDONED: frozenset(),
    },
)


class NotaryStatus(enum.StrEnum):
    """A submission's status as Apple's API spells it: the only place these strings live."""

    IN_PROGRESS = "In Progress"
    ACCEPTED = "Accepted"
    INVALID = "Invalid"
    REJECTED = "Rejected"

    @property
    def final(self) -> bool:
        return self is not NotaryStatus.IN_PROGRESS


# -- jobs --------------------------------------------------------------------------------------


class NotaryStage(enum.StrEnum):
    """Where a notarisation run is. DONE and FAILED end a run; the others are job states too."""

    PREFLIGHT = "preflight"
    HASHING = "hashing"
    SUBMITTING = "submitting"
    UPLOADING = "uploading"
    WAITING = "waiting"
    FETCHING_LOG = "fetching_log"
    DONE = "done"
    FAILED = "failed"

    @property
    def running(self) -> bool:
        return self not in (NotaryStage.DONE, NotaryStage.FAILED)


class Queued(enum.StrEnum):
    """A job waiting for a slot (also a job put back in the queue by a daemon restart)."""

    QUEUED = "queued"


class JobOutcome(enum.StrEnum):
    """How a job ended: Apple's verdict, or why there was none."""

    ACCEPTED = "accepted"
    INVALID = "invalid"
    REJECTED = "rejected"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @classmethod
    def from_status(cls, status: str | None) -> JobOutcome | None:
        """The outcome Apple's final ``status`` means; None for one we do not know."""
        return _OUTCOME_OF_STATUS.get(status or "")


_OUTCOME_OF_STATUS: Mapping[str, JobOutcome] = {
    NotaryStatus.ACCEPTED: JobOutcome.ACCEPTED,
    NotaryStatus.INVALID: JobOutcome.INVALID,
    NotaryStatus.REJECTED: JobOutcome.REJECTED,
}

QUEUED = Queued.QUEUED
JobState = Queued | NotaryStage | JobOutcome
"""A job's state: queued, a running stage, or its outcome (terminal)."""

RUNNING_STAGES: tuple[NotaryStage, ...] = tuple(stage for stage in NotaryStage if stage.running)
_NOT_FINAL: tuple[JobState, ...] = (QUEUED, *RUNNING_STAGES)
JOB_STATES: tuple[JobState, ...] = (*_NOT_FINAL, *JobOutcome)

JOB_LIFECYCLE: Lifecycle[JobState] = Lifecycle(
    "job",
    {
        # Not final: back to queued (a daemon restart), to any running stage (stages are not
        # monotonic: expired credentials send an upload back to submitting), or to any outcome
        # (a cancel or a failed source check may end a job that is still queued).
        **{state: frozenset(JOB_STATES) for state in _NOT_FINAL},
        # An outcome is final.
        **{outcome: frozenset() for outcome in JobOutcome},
    },
)


def parse_job_state(text: str) -> JobState:
    """The job state spelled ``text`` (as stored and as the API shows it)."""
    for state in JOB_STATES:
        if state.value == text:
            return state
    raise ValueError(f"unknown job state {text!r}")


def check_job_move(current: JobState, new: JobState, *, what: str = "") -> None:
    """``IllegalTransition`` unless ``JOB_LIFECYCLE`` allows ``current`` -> ``new``."""
    JOB_LIFECYCLE.check(current, new, what=what)
