"""What a person sees while notaryd rides out an outage: a line per change, at least every 60 s."""

from __future__ import annotations

import io

from service.outages import OutageReporter, human_duration
from service.progress import ProgressDisplay
from tests.support.clocks import ManualClock
from uploader.events import (
    BytesSent,
    HashProgress,
    NotaryRequestDone,
    NotaryStageChanged,
    PartAcknowledged,
    PartRetried,
    Retrying,
    RetryReason,
    UploadStateChanged,
)
from uploader.lifecycle import NotaryStage, UploadState

T = "/builds/Game.zip"
REFUSED = "Cannot connect to host 127.0.0.1:9 [Connection refused]"
MiB = 1024 * 1024


def reporter(clock: ManualClock) -> tuple[OutageReporter, list[str]]:
    lines: list[str] = []
    return OutageReporter(lines.append, clock=clock), lines


def test_human_durations() -> None:
    assert [human_duration(s) for s in (0, 45, 250, 3600 + 180)] == ["0s", "45s", "4m10s", "1h03m"]


def test_an_s3_outage_is_reported_at_once_then_every_60_s_then_its_end() -> None:
    clock = ManualClock(1000.0)
    report, lines = reporter(clock)
    for part in (1, 2, 3):  # three parts in a row fail, none acknowledged: S3 is out
        report(PartRetried(T, part, RetryReason.CONNECTION_RESET, 1, error=REFUSED, delay_seconds=8))
    assert lines == [f"notaryd: S3 unreachable ({REFUSED}); next part attempt in 8 s"]
    for _ in range(5):  # the same failure again: no new line within the minute
        clock.advance(10)
        report(PartRetried(T, 1, RetryReason.CONNECTION_RESET, 2, error=REFUSED, delay_seconds=8))
        report.tick()
    assert len(lines) == 1
    clock.advance(10)  # 60 s since the last line; the last retry was 10 s ago with 8 s to wait
    report.tick()
    assert lines[1] == f"notaryd: S3 unreachable for 1m00s ({REFUSED}); next part attempt in 0 s"
    clock.advance(190)
    report(PartRetried(T, 1, RetryReason.TIMEOUT, 3, error="read timed out", delay_seconds=8))
    assert lines[2] == "notaryd: S3 unreachable for 4m10s (read timed out); next part attempt in 8 s"
    clock.advance(5)
    report(PartAcknowledged(T, 1, 5 * MiB))
    assert lines[3] == "notaryd: S3 answering again after 4m15s"
    clock.advance(120)
    report.tick()
    assert len(lines) == 4


def test_an_isolated_part_failure_on_a_lossy_link_is_no_outage() -> None:
    clock = ManualClock(0.0)
    report, lines = reporter(clock)
    report(PartRetried(T, 4, RetryReason.CONNECTION_RESET, 1, error="reset", delay_seconds=0.1))
    report(PartAcknowledged(T, 5, MiB))
    report(PartRetried(T, 6, RetryReason.CONNECTION_RESET, 1, error="reset", delay_seconds=0.1))
    clock.advance(600)
    report.tick()
    report(UploadStateChanged(T, UploadState.COMPLETED, MiB, MiB))
    assert lines == []


def test_a_notary_service_outage_says_what_attempt_comes_next() -> None:
    clock = ManualClock(0.0)
    report, lines = reporter(clock)
    error = "cannot reach the notary service: connection refused"
    report(Retrying(T, "the notary service", error, "next submit attempt", 2.4))
    clock.advance(30)
    report(Retrying(T, "the notary service", error, "next submit attempt", 17.0))
    clock.advance(30)
    report.tick()
    report(NotaryRequestDone("submit", "200"))
    assert lines == [
        f"notaryd: the notary service not answering ({error}); next submit attempt in 2 s",
        f"notaryd: the notary service not answering for 1m00s ({error}); next submit attempt in 0 s",
        "notaryd: the notary service answering again after 1m00s",
    ]


def plain_display(clock: ManualClock) -> tuple[ProgressDisplay, io.StringIO]:
    out = io.StringIO()  # not a terminal: plain lines
    return ProgressDisplay(out, plain_interval_seconds=10, clock=clock), out


def test_plain_output_prints_while_bytes_move_even_before_any_part_is_acknowledged() -> None:
    clock = ManualClock(0.0)
    display, out = plain_display(clock)
    with display:
        display(UploadStateChanged(T, UploadState.UPLOADING, 100 * MiB, 0))
        for _ in range(31):  # one huge part on a slow link: bytes move, no acknowledgement
            clock.advance(1)
            display(BytesSent(T, 128 * 1024, resent=False))
    lines = out.getvalue().splitlines()
    assert len(lines) >= 4  # the first line, then at least one every 10 s
    assert lines[-1].startswith("notaryd: uploading 0 B of 100.0 MiB (0 %), 0.1 MiB/s, ETA ")


def test_rate_and_eta_are_of_the_bytes_sent_in_mib() -> None:
    clock = ManualClock(0.0)
    display, _ = plain_display(clock)
    display(UploadStateChanged(T, UploadState.UPLOADING, 100 * MiB, 0))
    for second in range(21):  # 4 MiB a second from 0 to 20 s: 80 MiB in the 20 s window
        display(BytesSent(T, 4 * MiB, resent=False))
        if second % 3 == 2:  # S3 acknowledges 7 parts of 4 MiB, far behind what was sent
            display(PartAcknowledged(T, second // 3 + 1, 4 * MiB))
        clock.advance(1 if second < 20 else 0)
    # 100 - 28 = 72 MiB not yet acknowledged at 4 MiB/s: 18 s
    assert display.speed() == "4.0 MiB/s, ETA 18s"


def test_packaging_and_hashing_show_their_rate() -> None:
    for packaging, label in ((True, "packaging"), (False, "hashing")):
        clock = ManualClock(0.0)
        display, out = plain_display(clock)
        with display:
            display(NotaryStageChanged(T, NotaryStage.HASHING,
                                       detail="packaging the bundle" if packaging else ""))
            for second in range(11):  # 8 MiB a second
                display(HashProgress(T, second * 8 * MiB, 512 * MiB, packaging=packaging))
                clock.advance(1)
        lines = out.getvalue().splitlines()
        assert lines[0] == ("notaryd: packaging the bundle" if packaging else "notaryd: hashing")
        assert lines[-1] == f"notaryd: {label} 80.0 MiB of 512.0 MiB (16 %), 8.0 MiB/s, 0 retries"


def test_the_wait_for_apple_shows_elapsed_time_and_the_last_check() -> None:
    clock = ManualClock(0.0)
    display, out = plain_display(clock)
    with display:
        display(NotaryStageChanged(T, NotaryStage.WAITING, "sub-1", "In Progress"))
        clock.advance(20)
        display(NotaryRequestDone("status", "200"))
        for _ in range(40):
            clock.advance(1)
            display.tick()
    lines = out.getvalue().splitlines()
    assert lines == ["notaryd: waiting submission sub-1 (In Progress)",
                     "notaryd: waiting for Apple's verdict for 1m00s; last check 40s ago"]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_shows_the_rate_falling_when_bytes_stop() -> None:
    clock = ManualClock(0.0)
    with ProgressDisplay(_Terminal(), clock=clock) as display:
        display(UploadStateChanged(T, UploadState.UPLOADING, 100 * MiB, 0))
        for _ in range(10):
            display(BytesSent(T, 4 * MiB, resent=False))
            clock.advance(1)
        # drawn with the 10th burst: 40 MiB in the 9 s since the first byte
        assert display.bar_stats() == "0 B of 100.0 MiB, 4.4 MiB/s, ETA -"
        clock.advance(30)  # nothing moves: no event comes, only ticks
        display.tick()
        assert display.bar_stats() == "0 B of 100.0 MiB, 0.0 MiB/s, ETA -"
