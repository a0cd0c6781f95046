"""notaryd's exit codes, in one place (the README's "Exit codes" table says the same).

| code | `notarize`, `submit --wait`, `wait` | `preflight` | `staple` |
|---|---|---|---|
| 0 | Accepted (or submitted with `--no-wait`) | clean | stapled / `--check`: stapled |
| 1 | any other failure, one line saying what to do; also Accepted but not stapled (the verdict stands, the line says "accepted, not stapled" and to run `notaryd staple`) | PATH could not be checked | not stapled |
| 2 | Invalid or Rejected, or preflight errors | errors found | — |
| 130 | interrupted (Ctrl-C); re-run to resume | | |

Every other command exits ``SUCCESS`` or ``FAILURE``. Commands return these names, never numbers;
``for_status``, ``for_job`` and ``for_error`` turn a verdict, a job's state or an error into one.
"""

from __future__ import annotations

from service.daemon.job_states import JobOutcome, JobState
from uploader.lifecycle import NotaryStatus

SUCCESS = 0
FAILURE = 1
ACCEPTED = SUCCESS
REJECTED = 2
# The contract has three codes (0, 1, 2): a CI script tells this case from other failures by the
# line, and a re-run goes straight to stapling (the verdict is kept).
ACCEPTED_NOT_STAPLED = FAILURE
USAGE = 2  # argparse's own code for a command line it refuses
INTERRUPTED = 130
CLEAN = SUCCESS  # preflight: nothing the notary service rejects
ERRORS_FOUND = REJECTED  # preflight: what the notary service would reject
STAPLED = SUCCESS
NOT_STAPLED = FAILURE
USAGE = 2  # argparse's own code for a command line it refuses

_BY_STATUS: dict[str, int] = {
    NotaryStatus.ACCEPTED: ACCEPTED, NotaryStatus.INVALID: REJECTED, NotaryStatus.REJECTED: REJECTED,
}
_BY_OUTCOME: dict[object, int] = {
    JobOutcome.ACCEPTED: ACCEPTED, JobOutcome.INVALID: REJECTED, JobOutcome.REJECTED: REJECTED,
}


def for_status(status: str, waited: bool = True) -> int:
    """A submission's exit code from Apple's ``status``; In Progress is success only unwaited."""
    if not waited and status == NotaryStatus.IN_PROGRESS:
        return ACCEPTED
    return _BY_STATUS.get(status, FAILURE)


def for_job(state: JobState) -> int:
    """``notaryd submit --wait`` / ``watch ID``: a daemon job's exit code from its last state."""
    return _BY_OUTCOME.get(state, FAILURE) if isinstance(state, JobOutcome) else FAILURE


def for_error(error: BaseException) -> int:
    """The exit code of a command that ended with ``error``: preflight problems read as Invalid."""
    from uploader.notary.pipeline import PreflightFailed  # the S3 stack: only on this path

    return ERRORS_FOUND if isinstance(error, PreflightFailed) else FAILURE
