"""The job lifecycle table, checked over every pair of job states, and ``Job.move_to`` on it."""

from __future__ import annotations

from itertools import product
from pathlib import Path

import pytest

from service.daemon.job_states import (
    JOB_LIFECYCLE,
    JOB_STATES,
    QUEUED,
    JobOutcome,
    JobState,
    parse_job_state,
)
from service.daemon.jobs import Job
from uploader.events import BytesSent, NotaryStageChanged
from uploader.lifecycle import IllegalTransition, NotaryStage, NotaryStatus
from uploader.progress import Progress

PAIRS = list(product(JOB_STATES, JOB_STATES))


def job_in(state: JobState) -> Job:
    return Job(id="0123456789ab", path=Path("/a.zip"), name=None, webhook=None,
               skip_preflight=False, state=state, created_at=1.0, updated_at=1.0)


def test_the_job_states_are_queued_the_running_stages_and_the_outcomes() -> None:
    assert JOB_STATES[0] is QUEUED
    assert set(JOB_STATES) == {QUEUED, *(s for s in NotaryStage if s.running), *JobOutcome}
    assert len(set(map(str, JOB_STATES))) == len(JOB_STATES)  # one spelling each
    assert JOB_LIFECYCLE.terminal == frozenset(JobOutcome)


@pytest.mark.parametrize(("current", "new"), PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_every_pair_of_job_states_follows_the_three_rules(current: JobState, new: JobState) -> None:
    # 1. an outcome is final; 2. anything else may go back to the queue (a daemon restart);
    # 3. and to any running stage (stages are not monotonic) or any outcome.
    expected = new is current if isinstance(current, JobOutcome) else True
    assert JOB_LIFECYCLE.allows(current, new) is expected

    job = job_in(current)
    if expected:
        assert job.move_to(new, now=5.0) is (new is not current)
        assert job.state is new
    else:
        with pytest.raises(IllegalTransition, match=f"job 0123456789ab is {current}; it cannot become {new}"):
            job.move_to(new, now=5.0)
        assert job.state is current and job.updated_at == 1.0


def test_job_states_read_back_from_their_spelling() -> None:
    for state in JOB_STATES:
        assert parse_job_state(str(state)) is state
    # the stages that end a run are not job states: the job's outcome says how it ended
    assert parse_job_state("failed") is JobOutcome.FAILED
    for unknown in ("done", "exploded"):
        with pytest.raises(ValueError, match=f"unknown job state '{unknown}'"):
            parse_job_state(unknown)


def test_an_outcome_comes_from_each_final_notary_status() -> None:
    assert {status: JobOutcome.from_status(status) for status in NotaryStatus} == {
        NotaryStatus.IN_PROGRESS: None,
        NotaryStatus.ACCEPTED: JobOutcome.ACCEPTED,
        NotaryStatus.INVALID: JobOutcome.INVALID,
        NotaryStatus.REJECTED: JobOutcome.REJECTED,
    }
    assert JobOutcome.from_status("Some Status Apple Adds") is None
    assert JobOutcome.from_status(None) is None
    assert [status.final for status in NotaryStatus] == [False, True, True, True]


def test_moving_stamps_the_start_once_and_the_end_settles_progress() -> None:
    clock = [0.0]
    job = job_in(QUEUED)
    job.progress = Progress(clock=lambda: clock[0])
    assert job.move_to(NotaryStage.HASHING, now=10.0) and job.started_at == 10.0
    job.progress(NotaryStageChanged("/a.zip", NotaryStage.UPLOADING, "sub-1", NotaryStatus.IN_PROGRESS))
    assert job.move_to(NotaryStage.UPLOADING, now=20.0) and job.started_at == 10.0
    job.progress(BytesSent("/a.zip", 4096, resent=False))
    clock[0] = 1.0
    assert job.progress.rate() > 0
    assert not job.move_to(NotaryStage.UPLOADING, now=30.0) and job.updated_at == 20.0
    assert job.move_to(JobOutcome.CANCELLED, now=40.0)
    assert job.finished_at == 40.0 and job.terminal and not job.running
    assert job.progress.rate() == 0 and job.progress.stage is None
