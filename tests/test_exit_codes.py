"""One exit-code table (``service.exit_codes``): verdicts, job outcomes and errors map through it."""

from __future__ import annotations

from pathlib import Path

import pytest

from service import exit_codes
from service.ci import github_action
from service.daemon.job_states import JOB_STATES, QUEUED, JobOutcome
from uploader.errors import ConfigError, NotarydError
from uploader.lifecycle import NotaryStage, NotaryStatus
from uploader.notary.pipeline import PreflightFailed


def test_the_contract_has_three_codes_and_interrupted() -> None:
    assert (exit_codes.ACCEPTED, exit_codes.FAILURE, exit_codes.REJECTED) == (0, 1, 2)
    assert exit_codes.ACCEPTED_NOT_STAPLED == exit_codes.FAILURE
    assert exit_codes.INTERRUPTED == 130
    # The Action's helper is standard library only, so it keeps its own copy: the same numbers.
    assert (github_action.EXIT_ACCEPTED, github_action.EXIT_FAILURE, github_action.EXIT_REJECTED) == (
        exit_codes.ACCEPTED, exit_codes.FAILURE, exit_codes.REJECTED)


@pytest.mark.parametrize(("status", "waited", "code"), [
    (NotaryStatus.ACCEPTED, True, 0), (NotaryStatus.INVALID, True, 2), (NotaryStatus.REJECTED, True, 2),
    (NotaryStatus.IN_PROGRESS, True, 1), (NotaryStatus.IN_PROGRESS, False, 0), ("Withdrawn", True, 1),
])
def test_a_verdict_maps_to_its_code(status: str, waited: bool, code: int) -> None:
    assert exit_codes.for_status(status, waited=waited) == code


def test_a_job_exits_as_its_verdict_and_fails_otherwise() -> None:
    codes = {state: exit_codes.for_job(state) for state in JOB_STATES}
    assert codes[JobOutcome.ACCEPTED] == 0
    assert codes[JobOutcome.INVALID] == codes[JobOutcome.REJECTED] == 2
    assert {codes[s] for s in (QUEUED, NotaryStage.UPLOADING, JobOutcome.FAILED, JobOutcome.CANCELLED)} == {1}


def test_an_error_fails_unless_preflight_found_what_apple_rejects(tmp_path: Path) -> None:
    assert exit_codes.for_error(NotarydError("x")) == exit_codes.for_error(ConfigError("x")) == 1
    assert exit_codes.for_error(PreflightFailed(tmp_path, "report")) == exit_codes.ERRORS_FOUND == 2
