"""The upload's decisions, without I/O: which part may go next, retry or give up, what a
ListParts answer means, abort or keep. The engine (``engine.py``, ``part_phase.py``) is the thin
async driver that does the I/O and feeds the outcomes in; everything here runs on plain values and an injected
clock, so it is tested in microseconds.

What a failure means is one table, ``FAILURES`` (error kind -> action, error, aborts,
precedence), drawn in docs/ARCHITECTURE.md ("Failure table") and checked against it by a test.
``s3client.classify`` gives an S3 failure its kind; a file that changed on disk is ``CHANGED``.
The action says what the part phase does with a failed attempt (``UploadSession.failed``):
``retry`` after back-off (the link governor may trip, below; gives up only past
RetryPolicy.max_attempts), ``re-read`` the part first (changed on disk: SourceChangedError, else
retried), ``stop`` with the error, or ``restart`` the multipart upload from part 1. ``aborts``
says whether the error ends the multipart upload for good (abort it) or keeps it for a resume;
when concurrent parts fail differently, the lowest ``precedence`` decides what happens next.

Link governor: a circuit breaker with half-open probes, chosen over AIMD because the failure it
answers is an outage, not congestion. On a good link failures are independent (a reset here, a
500 there) and must cost nothing but the one part's retry, so the breaker stays closed and every
slot keeps sending. When every recent attempt failed and none succeeded (``trip_after`` in a row:
one per slot, at least ``MIN_TRIP``), the link is taken to be down: the breaker opens, one part
at a time probes it with capped, growing back-off, and the other parts wait instead of pushing
16 MiB bodies into a dead link. The first success closes it again and the window doubles per
success (1, 2, 4, ... slots) so a link that is still bad trips again cheaply. AIMD would halve the
window on every isolated reset, which slows a lossy but working link for nothing. With one
attempt in three failing independently, 8 failures in a row (8 slots) happen about once in
4,000 attempts, and such a false trip costs one short probe and a ramp of three successes; in
an outage they happen within the first round of retries, before much is wasted.
"""

from __future__ import annotations

import enum
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from uploader.errors import (
    CredentialsExpiredError,
    LeaseLost,
    OperationDeniedError,
    PermanentUploadError,
    SourceChangedError,
    TransientUploadError,
    UploadError,
    UploadGoneError,
)
from uploader.events import RetryReason
from uploader.retry import RetryPolicy

log = logging.getLogger(__name__)

# Probes of a link that is down: the first waits about this long, doubling up to the cap. The
# cap bounds how long a recovered link stays idle before the next probe notices.
PROBE_INITIAL_SECONDS = 0.5
PROBE_MAX_SECONDS = 8.0
# Fewer failures in a row than this never count as an outage, however few slots there are.
MIN_TRIP = 6


class ErrorKind(enum.StrEnum):
    """What a failure is, as far as the upload is concerned (the rows of ``FAILURES``)."""

    TRANSIENT = "transient"
    BAD_DIGEST = "bad_digest"
    EXPIRED = "expired"
    GONE = "gone"
    DENIED = "denied"
    PERMANENT = "permanent"
    CHANGED = "changed"


@dataclass(frozen=True)
class Classified:
    """An S3 failure as ``s3client.classify`` judged it."""

    kind: str
    reason: RetryReason
    code: str
    message: str


class Action(enum.StrEnum):
    RETRY = "retry"
    REREAD = "re-read"
    STOP = "stop"
    RESTART = "restart"


@dataclass(frozen=True)
class Failure:
    action: Action
    error: type[UploadError]
    aborts: bool  # True: abort the multipart upload; False: keep it for a resume
    precedence: int  # among concurrent failures, the lowest decides
    text: str = "{where}: {code}: {message}{advice}"  # the error's message (stop, restart)


# The failure table (see the module docstring). TRANSIENT and BAD_DIGEST raise their error only
# when the retries are used up; CHANGED comes from reading the file, never from classify().
FAILURES: dict[ErrorKind, Failure] = {
    ErrorKind.CHANGED: Failure(Action.STOP, SourceChangedError, aborts=True, precedence=1),
    ErrorKind.PERMANENT: Failure(Action.STOP, PermanentUploadError, aborts=True, precedence=2),
    ErrorKind.DENIED: Failure(Action.STOP, OperationDeniedError, aborts=True, precedence=2),
    ErrorKind.EXPIRED: Failure(
        Action.STOP, CredentialsExpiredError, aborts=False, precedence=3,
        text="{where}: S3 says the upload credentials expired ({code}); "
             "new credentials are needed to continue"),
    ErrorKind.GONE: Failure(Action.RESTART, UploadGoneError, aborts=False, precedence=4,
                            text="{where}: {code}: {message}"),
    ErrorKind.TRANSIENT: Failure(Action.RETRY, TransientUploadError, aborts=False, precedence=5),
    ErrorKind.BAD_DIGEST: Failure(Action.REREAD, TransientUploadError, aborts=False,
                                  precedence=5),
}
# Each error class's row (the first listed for a class two kinds share).
_BY_ERROR: dict[type[BaseException], Failure] = {
    row.error: row for row in reversed(FAILURES.values())}
# The run's fence no longer holds (``uploader.fence``): it decides over every other failure, and
# the upload is kept for the holder that took it over.
_BY_ERROR[LeaseLost] = Failure(Action.STOP, LeaseLost, aborts=False, precedence=0)


class LinkGovernor:
    """How many parts may be in flight, and when the next may start (see module docstring)."""

    def __init__(self, ceiling: int, *, trip_after: int | None = None) -> None:
        self.ceiling = ceiling
        self.limit = ceiling
        self.trip_after = trip_after or max(MIN_TRIP, ceiling)
        self.tripped = False
        self.failures_in_a_row = 0
        self._probes = 0
        self.not_before = 0.0

    def succeeded(self) -> None:
        self.failures_in_a_row = 0
        self._probes = 0
        if self.tripped:
            self.tripped = False
            self.limit = 1
        self.limit = min(self.ceiling, self.limit * 2)

    def failed(self, now: float, uniform: Callable[[float, float], float]) -> bool:
        """Record a failed attempt; True if the link is (still) taken to be down."""
        self.failures_in_a_row += 1
        if not self.tripped and self.failures_in_a_row < max(self.trip_after, self.limit):
            return False
        self.tripped = True
        self.limit = 1
        cap = min(PROBE_MAX_SECONDS, PROBE_INITIAL_SECONDS * 2 ** min(self._probes, 16))
        self._probes += 1
        self.not_before = now + uniform(cap / 2, cap)
        return True


@dataclass(frozen=True)
class Retry:
    """The part is to be sent again after ``delay`` seconds (0 when the governor paces it)."""

    delay: float


class UploadSession:
    """The part phase of one upload: admission, outcomes and the transition table."""

    def __init__(
        self,
        target: str,
        concurrency: int,
        policy: RetryPolicy,
        *,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.target = target
        self.policy = policy
        self.governor = LinkGovernor(concurrency)
        self.in_flight = 0
        self._uniform = uniform
        self._retries: dict[int, int] = {}

    def admission(self, now: float) -> float | None:
        """0 if a part may start now; else seconds until it may, or None to wait for a slot."""
        if self.in_flight >= self.governor.limit:
            return None
        return max(0.0, self.governor.not_before - now)

    def started(self) -> None:
        self.in_flight += 1

    def abandoned(self) -> None:
        """An attempt ended without an outcome (cancelled, or a local failure)."""
        self.in_flight -= 1

    def acknowledged(self, part_number: int) -> None:
        self.in_flight -= 1
        self._retries.pop(part_number, None)
        if self.governor.tripped:
            log.info("%s: the link is back; ramping up to %d parts in flight", self.target,
                     self.governor.ceiling)
        self.governor.succeeded()

    def failed(self, part_number: int, verdict: Classified, now: float) -> Retry:
        """Apply the transition table to a failed attempt: a ``Retry`` or raise what ends it."""
        self.in_flight -= 1
        where = f"{self.target} part {part_number}"
        stop = stop_error(verdict, where)
        if stop is not None:
            raise stop
        retry_number = self._retries.get(part_number, 0)
        if self.policy.gives_up_after(retry_number + 1):
            raise TransientUploadError(
                f"{where} failed {retry_number + 1} times, last {verdict.code}: {verdict.message}",
                reason=verdict.reason)
        self._retries[part_number] = retry_number + 1
        was_tripped = self.governor.tripped
        if self.governor.failed(now, self._uniform):
            if not was_tripped:
                log.warning("%s: the last %d attempts all failed; the link looks down, probing it "
                            "with one part at a time", self.target, self.governor.failures_in_a_row)
            return Retry(0.0)  # paced by the governor's probes
        throttled = verdict.reason is RetryReason.THROTTLED
        return Retry(self.policy.delay(retry_number, throttled=throttled, uniform=self._uniform))


def stop_error(verdict: Classified, where: str) -> UploadError | None:
    """The error that ends an S3 operation with this verdict, or None to retry it."""
    row = FAILURES[ErrorKind(verdict.kind)]
    if row.action not in (Action.STOP, Action.RESTART):
        return None
    text = row.text.format(where=where, code=verdict.code, message=verdict.message,
                           advice=advice(verdict.code))
    if issubclass(row.error, PermanentUploadError):
        return row.error(text, code=verdict.code)
    return row.error(text)


def failure_of(error: BaseException) -> Failure | None:
    """The table's row for an error the engine raised (its most specific class listed)."""
    for cls in type(error).__mro__:
        if cls in _BY_ERROR:
            return _BY_ERROR[cls]
    return None


@dataclass(frozen=True)
class LocalPart:
    number: int
    length: int
    checksum: str
    done: bool


@dataclass(frozen=True)
class Reconciled:
    adopt: dict[int, str]  # part number -> ETag: S3 holds it, we never committed its ack
    lost: list[int]  # acknowledged by S3 once, no longer listed: send again


def reconcile(local: Iterable[LocalPart], remote: dict[int, dict[str, Any]],
              checksum_field: str | None) -> Reconciled:
    """What a ListParts answer means for our parts.

    A remote part is adopted only if its number, size and checksum match the plan (an upload
    attempt of another file version cannot sneak in); a part we committed but S3 no longer lists
    cannot be completed without sending it again.
    """
    adopt: dict[int, str] = {}
    lost: list[int] = []
    for mine in local:
        theirs = remote.get(mine.number)
        if theirs is None:
            if mine.done:
                lost.append(mine.number)
            continue
        if mine.done or int(theirs["Size"]) != mine.length:
            continue
        remote_sum = theirs.get(checksum_field) if checksum_field else None
        if remote_sum is not None and remote_sum != mine.checksum:
            continue
        adopt[mine.number] = str(theirs["ETag"])
    return Reconciled(adopt, lost)


def aborts_upload(error: BaseException) -> bool:
    """Whether an error ends the multipart upload for good (abort it) or keeps it for a resume."""
    row = failure_of(error)
    return row is not None and row.aborts


def most_significant(errors: Iterable[BaseException]) -> BaseException:
    """From the failures of concurrent parts, the one that decides what happens next (the
    lowest precedence; the first of equals; an error the table does not know comes last)."""

    def precedence(error: BaseException) -> float:
        row = failure_of(error)
        return row.precedence if row is not None else float("inf")

    return min(errors, key=precedence)


CERTIFICATE_UNTRUSTED = "CertificateUntrusted"  # classify's code for a TLS trust failure
_CREDENTIALS_ADVICE = (" (check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN and "
                       "the bucket policy)")
# The fix to suggest for an S3 error code.
ADVICE = {
    "AccessDenied": _CREDENTIALS_ADVICE,
    "InvalidAccessKeyId": _CREDENTIALS_ADVICE,
    "SignatureDoesNotMatch": _CREDENTIALS_ADVICE,
    "RequestTimeTooSkewed": " (this machine's clock is off; enable NTP)",
    "NoSuchBucket": " (check --bucket)",
    CERTIFICATE_UNTRUSTED: (" (the S3 endpoint's TLS certificate is not trusted: for a private CA "
                            "set AWS_CA_BUNDLE to its PEM file; otherwise check for a "
                            "TLS-intercepting proxy)"),
}


def advice(code: str) -> str:
    """The fix to suggest for an S3 error code, as a parenthesised tail ('' if none)."""
    return ADVICE.get(code, "")
