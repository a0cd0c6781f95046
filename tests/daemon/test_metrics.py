"""DaemonMetrics: feed events, read the explicit registry."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from service.daemon.job_states import QUEUED, JobOutcome, JobState
from service.daemon.metrics import DaemonMetrics
from tests.support.clocks import ManualClock
from uploader.events import (
    BytesSent,
    CredentialsIssued,
    NotaryRequestDone,
    NotaryStageChanged,
    PartRetried,
    RetryReason,
    UploadStateChanged,
)
from uploader.lifecycle import NotaryStage, UploadState
from uploader.progress import Progress
from uploader.rate import RateMeter


@dataclass
class FakeJob:
    """What the metrics read of a job: its state and its one Progress fold."""

    state: JobState
    progress: Progress = field(default_factory=Progress)

    @classmethod
    def with_bytes(cls, state: JobState, total: int, done: int) -> FakeJob:
        return cls(state, Progress(bytes_total=total, bytes_done=done))

    @property
    def terminal(self) -> bool:
        return isinstance(self.state, JobOutcome)

    def end(self, outcome: JobOutcome) -> None:
        self.state = outcome
        self.progress.settle()


def make(jobs: list[FakeJob] | None = None) -> tuple[DaemonMetrics, ManualClock, ManualClock]:
    wall, mono = ManualClock(1_000_000.0), ManualClock(50.0)
    metrics = DaemonMetrics(
        CollectorRegistry(), jobs=lambda: jobs or [], stuck_after_seconds=3600,
        rate_window_seconds=20, wall_clock=wall, monotonic=mono,
    )
    return metrics, wall, mono


def value(m: DaemonMetrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_bytes_sent_and_resent_are_counted_separately() -> None:
    m, _, _ = make()
    m(BytesSent("a", 1000, resent=False))
    m(BytesSent("a", 300, resent=True))
    assert value(m, "notaryd_upload_bytes_total") == 1300
    assert value(m, "notaryd_upload_resent_bytes_total") == 300


def test_retries_and_notary_requests_are_labelled_by_closed_sets() -> None:
    m, _, _ = make()
    m(PartRetried("a", 3, RetryReason.STALL, 1))
    m(PartRetried("a", 4, RetryReason.STALL, 1))
    m(PartRetried("a", 4, RetryReason.THROTTLED, 2))
    m(NotaryRequestDone("submit", "200"))
    m(NotaryRequestDone("status", "503"))
    assert value(m, "notaryd_part_retries_total", reason="stall") == 2
    assert value(m, "notaryd_part_retries_total", reason="throttled") == 1
    assert value(m, "notaryd_notary_requests_total", endpoint="status", code="503") == 1


def test_upload_rate_is_a_moving_average_that_decays() -> None:
    m, _, mono = make()
    for _ in range(30):  # 1 MB/s for 30 s: the 20 s window is full
        mono.now += 1
        m(BytesSent("a", 1_000_000, resent=False))
    assert value(m, "notaryd_upload_rate_bytes_per_second") == 1_000_000
    mono.now += 25  # the window (20 s) has passed with nothing sent
    assert value(m, "notaryd_upload_rate_bytes_per_second") == 0


def test_jobs_gauge_lists_every_unfinished_state_and_sums_active_bytes() -> None:
    jobs = [
        FakeJob.with_bytes(NotaryStage.UPLOADING, 100, 40),
        FakeJob.with_bytes(NotaryStage.UPLOADING, 50, 10),
        FakeJob.with_bytes(JobOutcome.ACCEPTED, 70, 70),
    ]
    m, _, _ = make(jobs)
    assert value(m, "notaryd_jobs", state="uploading") == 2
    assert value(m, "notaryd_jobs", state="queued") == 0
    for outcome in JobOutcome:  # finished jobs are counted by notaryd_jobs_finished_total
        assert value(m, "notaryd_jobs", state=str(outcome)) is None
    assert value(m, "notaryd_active_job_size_bytes") == 150
    assert value(m, "notaryd_active_job_done_bytes") == 50


def test_oldest_in_progress_submission_and_stuck_count() -> None:
    old, new = FakeJob(NotaryStage.WAITING), FakeJob(NotaryStage.UPLOADING)
    m, wall, _ = make([old, new])
    assert value(m, "notaryd_oldest_in_progress_submission_seconds") == 0
    assert value(m, "notaryd_stuck_submissions") == 0
    old.progress(NotaryStageChanged("/a.zip", NotaryStage.WAITING, "s1", "In Progress", wall.now - 7200))
    new.progress(NotaryStageChanged("/b.zip", NotaryStage.UPLOADING, "s2", "In Progress", wall.now - 60))
    assert value(m, "notaryd_oldest_in_progress_submission_seconds") == 7200
    assert value(m, "notaryd_stuck_submissions") == 1
    old.progress(NotaryStageChanged("/a.zip", NotaryStage.DONE, "s1", "Accepted"))
    assert value(m, "notaryd_oldest_in_progress_submission_seconds") == 60
    assert value(m, "notaryd_stuck_submissions") == 0
    new.end(JobOutcome.CANCELLED)  # e.g. cancelled without a final event from the pipeline
    assert value(m, "notaryd_oldest_in_progress_submission_seconds") == 0


def test_a_job_that_stopped_counting_leaves_the_gauges_even_before_it_settles() -> None:
    job = FakeJob(NotaryStage.WAITING)
    m, wall, _ = make([job])
    job.progress(NotaryStageChanged("/a.zip", NotaryStage.WAITING, "s1", "In Progress", wall.now - 7200))
    job.progress(CredentialsIssued("/a.zip", wall.now + 600))
    assert value(m, "notaryd_stuck_submissions") == 1
    job.state = JobOutcome.FAILED  # terminal: only unfinished jobs count
    assert value(m, "notaryd_stuck_submissions") == 0
    assert value(m, "notaryd_oldest_in_progress_submission_seconds") == 0
    assert value(m, "notaryd_credential_expiry_seconds") is None


def test_credential_expiry_tracks_the_soonest_active_upload() -> None:
    a, b = FakeJob(NotaryStage.UPLOADING), FakeJob(NotaryStage.UPLOADING)
    m, wall, _ = make([a, b])
    assert value(m, "notaryd_credential_expiry_seconds") is None  # absent, not a fake number
    a.progress(CredentialsIssued("x", wall.now + 3600))
    b.progress(CredentialsIssued("y", wall.now + 600))
    assert value(m, "notaryd_credential_expiry_seconds") == 600
    b.progress(UploadStateChanged("y", UploadState.COMPLETED, 10, 10))
    assert value(m, "notaryd_credential_expiry_seconds") == 3600
    wall.now += 100
    assert value(m, "notaryd_credential_expiry_seconds") == 3500
    a.progress(NotaryStageChanged("x", NotaryStage.WAITING, "s1", "In Progress"))
    assert value(m, "notaryd_credential_expiry_seconds") is None


def test_the_event_hook_counts_but_keeps_no_per_job_facts() -> None:
    m, wall, _ = make([])
    m(CredentialsIssued("x", wall.now + 600))
    m(NotaryStageChanged("/a.zip", NotaryStage.WAITING, "s1", "In Progress", wall.now - 7200))
    assert value(m, "notaryd_credential_expiry_seconds") is None
    assert value(m, "notaryd_oldest_in_progress_submission_seconds") == 0


def test_job_duration_histogram_uses_minutes_to_hours_buckets() -> None:
    m, _, _ = make()
    m.job_finished(JobOutcome.ACCEPTED, 1500)
    assert value(m, "notaryd_job_duration_seconds_bucket", outcome="accepted", le="1200.0") == 0
    assert value(m, "notaryd_job_duration_seconds_bucket", outcome="accepted", le="1800.0") == 1
    assert value(m, "notaryd_job_duration_seconds_sum", outcome="accepted") == 1500


def test_exposition_parses_and_holds_every_contract_metric() -> None:
    job = FakeJob(NotaryStage.UPLOADING)
    m, _, _ = make([FakeJob(QUEUED), job])
    m(BytesSent("a", 5, resent=False))
    m(PartRetried("a", 1, RetryReason.TIMEOUT, 1))
    m(NotaryRequestDone("submit", "200"))
    m.job_finished(JobOutcome.FAILED, 70)
    job.progress(CredentialsIssued("a", 2e9))
    names = {f.name for f in text_string_to_metric_families(m.render().decode())}
    for name in (
        "notaryd_upload_bytes", "notaryd_upload_resent_bytes", "notaryd_part_retries",
        "notaryd_upload_rate_bytes_per_second", "notaryd_jobs", "notaryd_notary_requests",
        "notaryd_job_duration_seconds", "notaryd_oldest_in_progress_submission_seconds",
        "notaryd_credential_expiry_seconds", "notaryd_build_info",
    ):
        assert name in names, name


def test_two_instances_do_not_share_a_registry() -> None:
    a, _, _ = make()
    b, _, _ = make()
    a(BytesSent("x", 10, resent=False))
    assert value(b, "notaryd_upload_bytes_total") == 0


def test_rate_meter_starts_without_a_spike() -> None:
    clock = ManualClock(0.0)
    meter = RateMeter(20, clock)
    meter.add(5_000_000)  # one burst at t=0 reads as 5 MB over (at least) one second
    assert meter.rate() == 5_000_000
    clock.now = 10
    assert meter.rate() == 500_000


def test_finished_jobs_are_a_counter_by_outcome_that_starts_at_zero() -> None:
    m, _, _ = make()
    for outcome in JobOutcome:  # present from the start: increase() sees the first end
        assert value(m, "notaryd_jobs_finished_total", outcome=str(outcome)) == 0
    m.job_finished(JobOutcome.FAILED, 70)
    m.job_finished(JobOutcome.FAILED, 80)
    m.job_finished(JobOutcome.CANCELLED, None)  # cancelled while queued: never started
    assert value(m, "notaryd_jobs_finished_total", outcome="failed") == 2
    assert value(m, "notaryd_jobs_finished_total", outcome="cancelled") == 1
    assert value(m, "notaryd_job_duration_seconds_count", outcome="cancelled") is None


def test_last_success_is_when_a_job_last_ended_accepted() -> None:
    m, wall, _ = make()
    assert value(m, "notaryd_last_success_timestamp_seconds") is None
    m.job_finished(JobOutcome.ACCEPTED, 10)
    assert value(m, "notaryd_last_success_timestamp_seconds") == 1_000_000.0
    wall.advance(600)
    m.job_finished(JobOutcome.FAILED, 10)
    assert value(m, "notaryd_last_success_timestamp_seconds") == 1_000_000.0
    restarted = DaemonMetrics(CollectorRegistry(), last_success_at=999_000.0)
    assert restarted.registry.get_sample_value("notaryd_last_success_timestamp_seconds") == 999_000.0


def test_process_metrics_are_exported_apart() -> None:
    m, _, _ = make()
    families = {f.name for f in text_string_to_metric_families(m.render_process().decode())}
    assert {"process_start_time_seconds", "process_resident_memory_bytes",
            "process_open_fds"} <= families
