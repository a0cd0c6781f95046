"""The upload's decisions, without I/O: which part may go next, retry or give up, what a
ListParts answer means, abort or keep. The engine (``engine.py``) is the thin async driver that
does the I/O and feeds the outcomes in; everything here runs on plain values and an injected
clock, so it is tested in microseconds.

Transition table for a failed part attempt (``UploadSession.failed``)::

    verdict of classify()   what happens                                    upload afterwards
    ---------------------   ---------------------------------------------   -----------------
    TRANSIENT               retry the part after back-off; the link          kept
                            governor may trip (see below); gives up only
                            past RetryPolicy.max_attempts
    BAD_DIGEST              the driver re-reads the part: changed on disk    kept / aborted
                            -> SourceChangedError, else retry as TRANSIENT
    EXPIRED                 stop: CredentialsExpiredError                    kept (new creds resume)
    GONE                    stop: UploadGoneError                            restarted from part 1
    PERMANENT               stop: PermanentUploadError                       aborted

Errors that end an upload (``abort_on``): a changed source or a permanent refusal aborts the
multipart upload; expiry, cancellation and transient give-ups keep it for a resume.

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

import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from uploader.errors import (
    CredentialsExpiredError,
    OperationDeniedError,
    PermanentUploadError,
    SourceChangedError,
    TransientUploadError,
    UploadError,
    UploadGoneError,
)
from uploader.events import RetryReason
from uploader.retry import RetryPolicy
from uploader.s3client import CERTIFICATE_UNTRUSTED, Classified, ErrorKind, is_denied

log = logging.getLogger(__name__)

# Probes of a link that is down: the first waits about this long, doubling up to the cap. The
# cap bounds how long a recovered link stays idle before the next probe notices.
PROBE_INITIAL_SECONDS = 0.5
PROBE_MAX_SECONDS = 8.0
# Fewer failures in a row than this never count as an outage, however few slots there are.
MIN_TRIP = 6


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
    """The table's rows that end an S3 operation: the error to raise, or None to retry it."""
    if verdict.kind == ErrorKind.EXPIRED:
        return CredentialsExpiredError(
            f"{where}: S3 says the upload credentials expired ({verdict.code}); "
            "new credentials are needed to continue")
    if verdict.kind == ErrorKind.GONE:
        return UploadGoneError(f"{where}: {verdict.code}: {verdict.message}")
    if is_denied(verdict):
        return OperationDeniedError(
            f"{where}: {verdict.code}: {verdict.message}{advice(verdict.code)}", code=verdict.code)
    if verdict.kind == ErrorKind.PERMANENT:
        return PermanentUploadError(
            f"{where}: {verdict.code}: {verdict.message}{advice(verdict.code)}", code=verdict.code)
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
    return isinstance(error, (SourceChangedError, PermanentUploadError))


_PRECEDENCE = (SourceChangedError, PermanentUploadError, CredentialsExpiredError, UploadGoneError,
               TransientUploadError)


def most_significant(errors: Iterable[BaseException]) -> BaseException:
    """From the failures of concurrent parts, the one that decides what happens next."""
    leaves = list(errors)
    for kind in _PRECEDENCE:
        for exc in leaves:
            if isinstance(exc, kind):
                return exc
    return leaves[0]


def advice(code: str) -> str:
    """The fix to suggest for an S3 error code, as a parenthesised tail ('' if none)."""
    if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return " (check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN and the bucket policy)"
    if code == "RequestTimeTooSkewed":
        return " (this machine's clock is off; enable NTP)"
    if code == "NoSuchBucket":
        return " (check --bucket)"
    if code == CERTIFICATE_UNTRUSTED:
        return (" (the S3 endpoint's TLS certificate is not trusted: for a private CA set "
                "AWS_CA_BUNDLE to its PEM file; otherwise check for a TLS-intercepting proxy)")
    return ""
