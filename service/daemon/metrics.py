"""Progress events -> Prometheus metrics, on an explicit ``CollectorRegistry``.

Two sources, nothing folded twice:

* ``DaemonMetrics`` is an event hook (``uploader.events.Hook``) on every job for the cumulative
  counters (bytes, resent bytes, part retries, notary requests) and the daemon-wide upload rate:
  a Prometheus counter is its own fold.
* Everything per job (states, active bytes, the oldest pending submission, stuck submissions,
  credential expiry) is computed at scrape time from ``jobs()``: each job's
  ``uploader.progress.Progress``, the one fold of its events. A job that ends, however it ends,
  stops counting at once, with no per-job bookkeeping here to forget.

Labels never carry job ids or file names: only closed sets (retry reason, notary endpoint, HTTP
code, job state, outcome).

Metrics (names are a contract, listed in the README's "Control API and metrics"):

* ``notaryd_upload_bytes_total``             every byte handed to the network, resent ones too
* ``notaryd_upload_resent_bytes_total``      the subset an earlier attempt had sent already (in
  this process or before a restart: only the bytes that had left, not whole parts)
* ``notaryd_part_retries_total{reason}``
* ``notaryd_upload_rate_bytes_per_second``   moving average of the above over ``rate_window`` s
* ``notaryd_jobs{state}``                    unfinished jobs, by state (every unfinished state
  listed): what is queued and running now, the same before and after a restart
* ``notaryd_jobs_finished_total{outcome}``   jobs that ended in this process, by outcome (every
  outcome listed from 0, so ``increase()`` sees the first one); a restart resets it, as
  Prometheus expects of a counter
* ``notaryd_last_success_timestamp_seconds`` when a job last ended accepted (Unix seconds; read
  from the job store at start-up, absent until one ever has)
* ``notaryd_notary_requests_total{endpoint,code}``
* ``notaryd_job_duration_seconds{outcome}``  histogram, first start -> terminal state
* ``notaryd_oldest_in_progress_submission_seconds``  age of the oldest submission Apple has
  not decided yet (0 when none)
* ``notaryd_credential_expiry_seconds``      seconds until the soonest-expiring upload
  credentials of an unfinished upload expire; absent when no upload holds credentials
* ``notaryd_stuck_submissions``              in-progress submissions older than ``stuck_after``
* ``notaryd_active_job_size_bytes`` / ``notaryd_active_job_done_bytes``  sum over unfinished jobs
* ``notaryd_build_info{version,python}``     constant 1
* ``process_*``                              prometheus-client's process collector (CPU, memory,
  open descriptors, start time: a restart shows as a new ``process_start_time_seconds``), on
  a registry of its own because it reads /proc: ``render_process`` runs off the loop

All methods run on the event-loop thread; scrapes call the collector from the same thread
(aiohttp handler), so no locking is needed.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterable, Iterator
from importlib import metadata
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from uploader.constants import STUCK_AFTER_SECONDS
from uploader.events import BytesSent, Event, NotaryRequestDone, PartRetried
from uploader.progress import Progress
from uploader.rate import Clock, RateMeter

from .job_states import JOB_STATES, JobOutcome, JobState

UNFINISHED_STATES: tuple[JobState, ...] = tuple(s for s in JOB_STATES if s not in set(JobOutcome))

# Notarisation of 6-25 GB builds takes minutes to hours: 1 min .. 12 h.
JOB_DURATION_BUCKETS = (60, 120, 300, 600, 900, 1200, 1800, 2700, 3600, 5400, 7200, 10800, 21600, 43200)


class JobView(Protocol):
    @property
    def state(self) -> JobState: ...
    @property
    def terminal(self) -> bool: ...
    @property
    def progress(self) -> Progress: ...


class DaemonMetrics:
    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        jobs: Callable[[], Iterable[JobView]] = tuple,
        last_success_at: float | None = None,
        stuck_after_seconds: float = STUCK_AFTER_SECONDS,
        rate_window_seconds: float = 20.0,
        wall_clock: Clock = time.time,
        monotonic: Clock = time.monotonic,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.jobs = jobs
        self.last_success_at = last_success_at
        self.stuck_after_seconds = stuck_after_seconds
        self._now = wall_clock
        self._rate = RateMeter(rate_window_seconds, monotonic)

        r = self.registry
        self.upload_bytes = Counter(
            "notaryd_upload_bytes", "Bytes handed to the network, resent ones included.",
            registry=r,
        )
        self.resent_bytes = Counter(
            "notaryd_upload_resent_bytes",
            "Bytes sent again that an earlier attempt (or run) had sent already.",
            registry=r,
        )
        self.part_retries = Counter(
            "notaryd_part_retries", "Part uploads retried, by reason.", ["reason"], registry=r
        )
        self.notary_requests = Counter(
            "notaryd_notary_requests",
            "Requests to the notary API, by endpoint and HTTP status (or 'error').",
            ["endpoint", "code"],
            registry=r,
        )
        self.job_duration = Histogram(
            "notaryd_job_duration_seconds",
            "Seconds from a job's first start to its terminal state, by outcome.",
            ["outcome"],
            buckets=JOB_DURATION_BUCKETS,
            registry=r,
        )
        self.jobs_finished = Counter(
            "notaryd_jobs_finished", "Jobs that ended since the daemon started, by outcome.",
            ["outcome"], registry=r,
        )
        for outcome in JobOutcome:
            self.jobs_finished.labels(outcome=str(outcome))
        # /proc reads: rendered apart, off the loop (``render_process``)
        self.process_registry = CollectorRegistry()
        ProcessCollector(registry=self.process_registry)
        Info("notaryd_build", "notaryd version.", registry=r).info(
            {"version": notaryd_version(), "python": platform.python_version()}
        )
        r.register(_LiveCollector(self))

    # -- the event hook: cumulative counters ------------------------------------------------

    def __call__(self, event: Event, /) -> None:
        """Counts what every job sends and asks; per-job facts are read from the jobs' Progress."""
        match event:
            case BytesSent(nbytes=nbytes, resent=resent):
                self.upload_bytes.inc(nbytes)
                if resent:
                    self.resent_bytes.inc(nbytes)
                self._rate.add(nbytes)
            case PartRetried(reason=reason):
                self.part_retries.labels(reason=str(reason)).inc()
            case NotaryRequestDone(endpoint=endpoint, code=code):
                self.notary_requests.labels(endpoint=endpoint, code=code).inc()
            case _:
                pass

    def job_finished(self, outcome: JobOutcome, duration_seconds: float | None,
                     finished_at: float | None = None) -> None:
        """A job ended (at ``finished_at``, Unix seconds, default now); ``duration_seconds`` is
        None for one that never started (cancelled while queued)."""
        self.jobs_finished.labels(outcome=str(outcome)).inc()
        if duration_seconds is not None:
            self.job_duration.labels(outcome=str(outcome)).observe(max(0.0, duration_seconds))
        if outcome is JobOutcome.ACCEPTED:
            self.last_success_at = finished_at if finished_at is not None else self._now()

    def render(self) -> bytes:
        """The daemon's metrics; on the loop thread (the live gauges read the jobs)."""
        return generate_latest(self.registry)

    def render_process(self) -> bytes:
        """``process_*`` (reads /proc): call it off the loop."""
        return generate_latest(self.process_registry)

    # -- values computed at scrape time -------------------------------------------------------

    def upload_rate(self) -> float:
        return self._rate.rate()

    def _active(self) -> list[Progress]:
        return [job.progress for job in self.jobs() if not job.terminal]

    def oldest_in_progress_seconds(self) -> float:
        pending = [t for p in self._active() if (t := p.pending_since) is not None]
        return max(0.0, self._now() - min(pending)) if pending else 0.0

    def stuck_submissions(self) -> int:
        now = self._now()
        return sum(
            1 for p in self._active()
            if p.pending_since is not None and now - p.pending_since > self.stuck_after_seconds
        )

    def credential_expiry_seconds(self) -> float | None:
        expiries = [t for p in self._active() if (t := p.credentials_expire_at) is not None]
        return min(expiries) - self._now() if expiries else None


class _LiveCollector(Collector):
    """Gauges whose value is computed when Prometheus scrapes."""

    def __init__(self, metrics: DaemonMetrics) -> None:
        self._m = metrics

    def describe(self) -> Iterable[Metric]:
        return []  # unchecked collector: describing would run collect() at registration time

    def collect(self) -> Iterator[Metric]:
        m = self._m
        yield GaugeMetricFamily(
            "notaryd_upload_rate_bytes_per_second",
            f"Upload rate, moving average over {m._rate.window_seconds:g} s.",
            value=m.upload_rate(),
        )
        counts: dict[JobState, int] = dict.fromkeys(UNFINISHED_STATES, 0)
        size = done = 0
        for job in m.jobs():
            if not job.terminal:
                counts[job.state] += 1
                size += job.progress.bytes_total
                done += job.progress.bytes_done
        jobs = GaugeMetricFamily("notaryd_jobs", "Unfinished jobs, by state.", labels=["state"])
        for state, count in counts.items():
            jobs.add_metric([str(state)], count)
        yield jobs
        yield GaugeMetricFamily(
            "notaryd_active_job_size_bytes", "Total size of unfinished jobs' archives.", value=size
        )
        yield GaugeMetricFamily(
            "notaryd_active_job_done_bytes",
            "Bytes of unfinished jobs' archives confirmed uploaded.",
            value=done,
        )
        yield GaugeMetricFamily(
            "notaryd_oldest_in_progress_submission_seconds",
            "Age of the oldest submission the notary service has not decided yet (0 if none).",
            value=m.oldest_in_progress_seconds(),
        )
        yield GaugeMetricFamily(
            "notaryd_stuck_submissions",
            f"In-progress submissions older than {m.stuck_after_seconds:g} s.",
            value=m.stuck_submissions(),
        )
        expiry = GaugeMetricFamily(
            "notaryd_credential_expiry_seconds",
            "Seconds until the soonest-expiring credentials of an unfinished upload expire.",
        )
        seconds = m.credential_expiry_seconds()
        if seconds is not None:
            expiry.add_metric([], seconds)
        yield expiry
        last_success = GaugeMetricFamily(
            "notaryd_last_success_timestamp_seconds",
            "When a job last ended accepted (Unix seconds).",
        )
        if m.last_success_at is not None:
            last_success.add_metric([], m.last_success_at)
        yield last_success


def notaryd_version() -> str:
    try:
        return metadata.version("notaryd")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"
