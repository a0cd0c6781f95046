"""The sans-IO upload session: its transition table and link governor, on plain values."""

from __future__ import annotations

from pathlib import Path

import pytest

from uploader.errors import (
    CredentialsExpiredError,
    OperationDeniedError,
    PermanentUploadError,
    SourceChangedError,
    StallError,
    TransientUploadError,
    UploadGoneError,
)
from uploader.events import RetryReason
from uploader.retry import RetryPolicy
from uploader.upload_session import (
    PROBE_MAX_SECONDS,
    Classified,
    ErrorKind,
    LinkGovernor,
    LocalPart,
    UploadSession,
    aborts_upload,
    most_significant,
    reconcile,
)

RESET = Classified(ErrorKind.TRANSIENT, RetryReason.CONNECTION_RESET, "ConnectionResetError", "")
SLOW_DOWN = Classified(ErrorKind.TRANSIENT, RetryReason.THROTTLED, "SlowDown", "")


def top(low: float, high: float) -> float:
    return high


def session(concurrency: int = 4, **policy: object) -> UploadSession:
    return UploadSession("s3://b/k", concurrency, RetryPolicy(**policy), uniform=top)  # type: ignore[arg-type]


@pytest.mark.parametrize(("kind", "error"), [
    (ErrorKind.EXPIRED, CredentialsExpiredError),
    (ErrorKind.GONE, UploadGoneError),
    (ErrorKind.PERMANENT, PermanentUploadError),
    (ErrorKind.DENIED, OperationDeniedError),
])
def test_failures_that_end_the_part_phase(kind: str, error: type[Exception]) -> None:
    s = session()
    s.started()
    with pytest.raises(error):
        s.failed(1, Classified(kind, RetryReason.OTHER, "Code", "message"), now=0)
    assert s.in_flight == 0


def test_transient_failures_back_off_per_part_and_throttling_starts_higher() -> None:
    s = session(initial_delay_seconds=0.05, throttled_initial_delay_seconds=1.0)
    s.started()
    assert s.failed(1, RESET, now=0).delay == 0.05
    s.started()
    assert s.failed(1, RESET, now=0).delay == 0.1
    s.started()
    assert s.failed(2, SLOW_DOWN, now=0).delay == 1.0  # part 2's first retry


def test_gives_up_only_past_max_attempts() -> None:
    s = session(max_attempts=2)
    s.started()
    s.failed(1, RESET, now=0)
    s.started()
    with pytest.raises(TransientUploadError):
        s.failed(1, RESET, now=0)


def test_admission_respects_slots_and_the_probe_pace() -> None:
    s = session(concurrency=2)
    for _ in range(2):
        assert s.admission(now=0) == 0
        s.started()
    assert s.admission(now=0) is None  # both slots busy
    for _ in range(6):  # MIN_TRIP failures in a row: the link is down
        s.failed(1, RESET, now=10)
        s.started()
    s.abandoned()
    assert s.governor.tripped and s.governor.limit == 1
    s.abandoned()
    wait = s.admission(now=10)
    assert wait is not None and 0 < wait <= PROBE_MAX_SECONDS


def test_governor_probe_back_off_is_capped_and_success_ramps_up() -> None:
    governor = LinkGovernor(8)
    now = 0.0
    gaps = []
    for _ in range(30):
        governor.failed(now, top)
        gaps.append(governor.not_before - now)
        now = governor.not_before
    assert governor.tripped and max(gaps) == PROBE_MAX_SECONDS
    limits = []
    for _ in range(4):
        governor.succeeded()
        limits.append(governor.limit)
    assert limits == [2, 4, 8, 8] and not governor.tripped


def test_isolated_failures_between_successes_never_trip() -> None:
    governor = LinkGovernor(8)
    for _ in range(100):
        for _ in range(7):
            assert not governor.failed(0, top)
        governor.succeeded()
    assert governor.limit == 8


def test_reconcile_adopts_only_matching_parts_and_finds_lost_ones() -> None:
    local = [LocalPart(1, 10, "a", True), LocalPart(2, 10, "b", False),
             LocalPart(3, 10, "c", False), LocalPart(4, 5, "d", False)]
    remote = {2: {"Size": 10, "ETag": "e2", "ChecksumX": "b"},
              3: {"Size": 10, "ETag": "e3", "ChecksumX": "other"},  # another file's bytes
              4: {"Size": 9, "ETag": "e4"}}
    found = reconcile(local, remote, "ChecksumX")
    assert found.adopt == {2: "e2"} and found.lost == [1]


CHANGED = SourceChangedError(Path("a.zip"), "part 2 changed on disk")
DENIED = OperationDeniedError("denied", code="AccessDenied")
EXPIRED = CredentialsExpiredError("expired")
GONE = UploadGoneError("gone")
STALL = StallError(1, 5)


def test_a_changed_file_or_a_refusal_aborts_the_upload_the_rest_keeps_it() -> None:
    assert [aborts_upload(e) for e in (CHANGED, DENIED, PermanentUploadError("no"))] == [True] * 3
    assert [aborts_upload(e) for e in (EXPIRED, GONE, STALL, OSError())] == [False] * 4


def test_of_concurrent_failures_the_table_precedence_decides() -> None:
    assert most_significant([STALL, GONE, EXPIRED, DENIED, CHANGED]) is CHANGED
    assert most_significant([STALL, GONE, EXPIRED, DENIED]) is DENIED
    assert most_significant([OSError(), STALL, GONE, EXPIRED]) is EXPIRED
    assert most_significant([OSError(), STALL, GONE]) is GONE
    first = OSError()
    assert most_significant([first, KeyError()]) is first  # none listed: the first
