"""Progress: the one fold of a run's events, with a fake clock."""

from __future__ import annotations

import io
import math

from service.progress import ProgressDisplay
from tests.support.clocks import ManualClock
from uploader.events import (
    BytesSent,
    CredentialsIssued,
    HashProgress,
    NotaryRequestDone,
    NotaryStageChanged,
    PartAcknowledged,
    PartRetried,
    RetryReason,
    UploadStateChanged,
)
from uploader.lifecycle import NotaryStage, UploadState
from uploader.progress import Progress

T = "/builds/App.zip"


def test_acknowledged_bytes_never_pass_the_total_and_completion_fills_it() -> None:
    p = Progress(bytes_total=1000)
    p(UploadStateChanged(T, UploadState.UPLOADING, 1000, 200))  # resumed: 200 already there
    assert p.bytes_done == 200
    p(PartAcknowledged(T, 2, 500))
    p(PartAcknowledged(T, 3, 500))  # e.g. a last part acknowledged twice after a lost answer
    assert p.bytes_done == 1000
    p(UploadStateChanged(T, UploadState.COMPLETED, 1000, 0))
    assert p.bytes_done == 1000 and p.upload_state is UploadState.COMPLETED


def test_sent_and_resent_bytes_and_retries_are_counted_apart_from_acknowledged_ones() -> None:
    p = Progress(bytes_total=1000)
    p(BytesSent(T, 400, resent=False))
    p(PartRetried(T, 1, RetryReason.STALL, 1))
    p(BytesSent(T, 400, resent=True))
    assert (p.bytes_sent, p.bytes_resent, p.retries, p.bytes_done) == (800, 400, 1, 0)


def test_hashing_reports_its_own_progress_and_may_learn_the_total() -> None:
    p = Progress()
    p(HashProgress(T, 10, 4000))
    assert (p.bytes_hashed, p.bytes_total) == (10, 4000)
    p(HashProgress(T, 4000, 0))  # a total of 0 means "unknown": the one known stays
    assert (p.bytes_hashed, p.bytes_total) == (4000, 4000)


def test_stage_changes_keep_what_later_events_leave_out() -> None:
    p = Progress()
    p(NotaryStageChanged(T, NotaryStage.SUBMITTING))
    assert p.stage is NotaryStage.SUBMITTING and p.submission_id is None
    p(NotaryStageChanged(T, NotaryStage.UPLOADING, "sub-1", "In Progress", submitted_at=50.0))
    p(NotaryStageChanged(T, NotaryStage.WAITING, detail="stuck: in progress for 3.0 h"))
    assert (p.submission_id, p.notary_status, p.submitted_at) == ("sub-1", "In Progress", 50.0)
    assert p.stage_detail.startswith("stuck")
    p(NotaryStageChanged(T, NotaryStage.DONE, "sub-1", "Accepted"))
    assert p.notary_status == "Accepted"


def test_a_submission_is_pending_only_while_uploading_or_waiting() -> None:
    p = Progress()
    p(NotaryStageChanged(T, NotaryStage.SUBMITTING, "sub-1", "In Progress", submitted_at=50.0))
    assert p.pending_since is None
    p(NotaryStageChanged(T, NotaryStage.UPLOADING, "sub-1", "In Progress", submitted_at=50.0))
    assert p.pending_since == 50.0
    p(NotaryStageChanged(T, NotaryStage.WAITING, "sub-1", "In Progress"))
    assert p.pending_since == 50.0
    p(NotaryStageChanged(T, NotaryStage.FETCHING_LOG, "sub-1", "Accepted"))
    assert p.pending_since is None


def test_credentials_are_held_until_the_upload_is_over() -> None:
    for end in (
        UploadStateChanged(T, UploadState.COMPLETED, 10, 10),
        UploadStateChanged(T, UploadState.ABORTED, 10, 0),
        UploadStateChanged(T, UploadState.FAILED, 10, 0),
        NotaryStageChanged(T, NotaryStage.WAITING, "sub-1", "In Progress"),
        NotaryStageChanged(T, NotaryStage.FAILED, detail="boom"),
    ):
        p = Progress()
        p(CredentialsIssued(T, 9999.0))
        p(UploadStateChanged(T, UploadState.UPLOADING, 10, 0))
        assert p.credentials_expire_at == 9999.0
        p(end)
        assert p.credentials_expire_at is None, end


def test_events_it_does_not_fold_change_nothing() -> None:
    p = Progress(bytes_total=5)
    before = repr(p)
    p(NotaryRequestDone("status", "200"))
    assert repr(p) == before


def test_rate_is_the_moving_average_of_bytes_sent() -> None:
    clock = ManualClock(100.0)
    p = Progress(bytes_total=10_000_000, rate_window_seconds=20, clock=clock)
    assert p.rate() == 0
    for _ in range(30):  # 100 kB/s for 30 s fills the 20 s window
        clock.now += 1
        p(BytesSent(T, 100_000, resent=False))
    assert p.rate() == 100_000
    clock.now += 21
    assert p.rate() == 0


def test_seconds_to_finish_needs_history_then_projects_the_rest_at_the_rate() -> None:
    clock = ManualClock(100.0)
    p = Progress(bytes_total=1_000_000, rate_window_seconds=120, clock=clock)
    p(BytesSent(T, 10_000, resent=False))
    clock.now += 5
    assert p.seconds_to_finish(min_history_seconds=10) is None  # 5 s of history: no judgement
    for _ in range(5):
        clock.now += 1
        p(BytesSent(T, 10_000, resent=False))
        p(PartAcknowledged(T, 1, 10_000))
    # 60 kB over 10 s of history: 6 kB/s; 950 kB left
    assert p.seconds_to_finish(min_history_seconds=10) == 950_000 / 6_000
    clock.now += 200  # nothing sent for longer than the window: it would never finish
    assert p.seconds_to_finish(min_history_seconds=10) == math.inf


def test_seconds_to_finish_is_zero_when_every_byte_is_acknowledged() -> None:
    clock = ManualClock(100.0)
    p = Progress(bytes_total=100, clock=clock)
    p(BytesSent(T, 100, resent=False))
    p(PartAcknowledged(T, 1, 100))
    clock.now += 500  # the rate has decayed to 0 while S3 completes the upload
    assert p.seconds_to_finish(min_history_seconds=10) == 0.0


def test_settle_ends_everything_in_flight_but_keeps_a_final_stage() -> None:
    clock = ManualClock(100.0)
    p = Progress(bytes_total=100, clock=clock)
    p(CredentialsIssued(T, 9999.0))
    p(NotaryStageChanged(T, NotaryStage.UPLOADING, "sub-1", "In Progress", submitted_at=50.0))
    p(BytesSent(T, 50, resent=False))
    p.settle()  # e.g. cancelled mid-upload: no final event will come
    assert (p.rate(), p.credentials_expire_at, p.stage, p.pending_since) == (0, None, None, None)
    assert p.submission_id == "sub-1" and p.bytes_sent == 50
    p(NotaryStageChanged(T, NotaryStage.DONE, "sub-1", "Accepted"))
    p.settle()
    assert p.stage is NotaryStage.DONE


def test_the_cli_display_renders_the_one_fold() -> None:
    clock = ManualClock(100.0)
    out = io.StringIO()  # not a terminal: plain lines
    with ProgressDisplay(out, plain_interval_seconds=10, clock=clock) as display:
        display(UploadStateChanged(T, UploadState.UPLOADING, 4096, 0))
        clock.now += 1
        display(BytesSent(T, 1024, resent=False))
        display(PartRetried(T, 1, RetryReason.TIMEOUT, 1))
        display(PartAcknowledged(T, 1, 1024))  # within the interval: no new line
        clock.now += 10
        display(PartAcknowledged(T, 2, 1024))
        display(UploadStateChanged(T, UploadState.COMPLETED, 4096, 4096))
        display(NotaryStageChanged(T, NotaryStage.WAITING, "sub-1", "In Progress"))
    lines = out.getvalue().splitlines()
    assert lines[0] == "notaryd: uploading 0 B of 4.0 KiB (0 %), 0.0 MiB/s, ETA -, 0 retries"
    assert lines[1].startswith("notaryd: uploading 2.0 KiB of 4.0 KiB (50 %), ")
    assert lines[1].endswith(", 1 retries")
    assert lines[2].startswith("notaryd: uploaded 4.0 KiB of 4.0 KiB (100 %)")
    assert lines[3] == "notaryd: waiting submission sub-1 (In Progress)"
    assert len(lines) == 4
    assert display.progress.bytes_done == 4096 and display.progress.retries == 1
