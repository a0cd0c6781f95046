"""A daemon job's states and the moves allowed between them (``JOB_LIFECYCLE``).

A job is one archive's trip through the pipeline (``service.daemon.jobs.Job.move_to`` enforces the
table, ``JobStore`` saves it). Its state is not a type of its own: it is ``QUEUED``, or the pipeline
stage it is in (``uploader.lifecycle.NotaryStage``), or how it ended (``JobOutcome``, from Apple's
status or the run's error).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from uploader.lifecycle import Lifecycle, NotaryStage, NotaryStatus, final


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
VERDICTS: frozenset[JobOutcome] = frozenset(_OUTCOME_OF_STATUS.values())
"""The outcomes Apple decided (there is a log); the others are ours (failed, cancelled)."""

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
        **final(*JobOutcome),
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
