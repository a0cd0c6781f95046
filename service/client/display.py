"""Showing daemon jobs in a terminal: a live bar for one job, a table for all.

Input is the API's job snapshots (``snapshot.JobSnapshot``). On a terminal rich draws
and redraws; otherwise lines are printed: one per state change, and progress at most every
``plain_interval_seconds`` (so CI logs stay readable). Paths, names and errors come from
outside (a file name, a job name, a server's answer): they are shown through
``uploader.terminal.printable``, never raw.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from service.daemon.job_states import QUEUED, JobOutcome
from service.daemon.snapshot import JobSnapshot
from service.outages import human_duration
from service.progress import TransferBar, human_bytes, human_rate
from uploader.lifecycle import NotaryStage
from uploader.terminal import printable

# Stages with a byte count worth a progress bar (hashing counts bytes hashed).
_BYTE_STAGES = frozenset({NotaryStage.HASHING, NotaryStage.UPLOADING})


def progress_text(job: JobSnapshot) -> str:
    total, done = job.bytes_total, job.bytes_done
    if job.state is NotaryStage.HASHING and total:
        return f"hashed {100 * job.bytes_hashed / total:.0f} %"
    if not total:
        return "-"
    return f"{human_bytes(done)} / {human_bytes(total)} ({100 * done / total:.0f} %)"


def rate_text(job: JobSnapshot) -> str:
    rate = job.rate_bytes_per_second
    return human_rate(rate) if rate else "-"


def eta_text(job: JobSnapshot) -> str:
    return "-" if job.eta_seconds is None else human_duration(job.eta_seconds)


def jobs_table(jobs: Iterable[JobSnapshot]) -> Table:
    jobs = list(jobs)
    fleet = any(job.worker for job in jobs)  # a fleet's jobs say which worker runs each
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("ID", "STATE", "PROGRESS", "RATE", "ETA", "SUBMISSION", *(("WORKER",) * fleet), "PATH"):
        table.add_column(column, no_wrap=column != "PATH")
    for job in jobs:
        state = str(job.state)
        if job.error and job.state is JobOutcome.FAILED:
            state = "failed!"
        cells = (job.id, state, progress_text(job), rate_text(job), eta_text(job),
                 job.submission_id or "-", *((job.worker or "-",) * fleet), job.path)
        table.add_row(*(Text(printable(cell)) for cell in cells))  # Text: "[" is no markup
    return table


def describe(job: JobSnapshot) -> str:
    """``notaryd job ID``: one field per line."""
    fields = [
        ("id", job.id),
        ("path", job.path),
        ("name", job.name or "-"),
        ("state", job.state),
        ("progress", progress_text(job)),
        ("rate", rate_text(job)),
        ("eta", eta_text(job)),
        ("submission", job.submission_id or "-"),
        ("notary status", job.notary_status or "-"),
        ("error", job.error or "-"),
        ("created", _time(job.created_at)),
        ("started", _time(job.started_at)),
        ("finished", _time(job.finished_at)),
    ]
    return "\n".join(f"{key + ':':<15}{printable(str(value))}" for key, value in fields)


def verdict_line(job: JobSnapshot) -> str:
    """How a followed job ended, and where its submission's log is (``submit --wait``, ``watch``)."""
    line = f"notaryd: job {job.id} {job.state}"
    if job.notary_status and job.notary_status.lower() != str(job.state):
        line += f" ({job.notary_status})"
    if job.error:
        line += f": {job.error}"
    if job.submission_id:
        line += f" (submission {job.submission_id}; `notaryd log {job.submission_id}`)"
    return line


def _time(value: float | None) -> str:
    if value is None:
        return "-"
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
    except (OverflowError, OSError, ValueError):  # a time no calendar shows
        return str(value)


class JobFollower(TransferBar):
    """Shows one job's progress (``notaryd submit --wait``); feed it snapshots."""

    def __init__(self, stream: TextIO | None = None, *, plain_interval_seconds: float = 10.0) -> None:
        super().__init__(stream, plain_interval_seconds=plain_interval_seconds, first_label=QUEUED)
        self._last_state: str | None = None
        self._last_line = 0.0

    def update(self, job: JobSnapshot) -> None:
        state = str(job.state)
        if state != self._last_state:
            self._last_state = state
            sub = f" (submission {job.submission_id})" if job.submission_id else ""
            self.message(printable(f"notaryd: job {job.id} {state}{sub}"))
        total = job.bytes_total or None
        done = job.bytes_hashed if job.state is NotaryStage.HASHING else job.bytes_done
        if self._progress is not None:
            stats = f"{progress_text(job)}, {rate_text(job)}, ETA {eta_text(job)}"
            self.show(state, done, total, stats)
            return
        now = time.monotonic()
        if job.state in _BYTE_STAGES and now - self._last_line >= self._interval:
            self._last_line = now
            self.message(
                f"notaryd: {state} {progress_text(job)}, {rate_text(job)}, ETA {eta_text(job)}"
            )


class JobsWatcher:
    """``notaryd watch``: a live table of every job on a terminal, lines otherwise."""

    def __init__(self, stream: TextIO | None = None, *, plain_interval_seconds: float = 10.0) -> None:
        self._stream = stream or sys.stdout
        self._interval = plain_interval_seconds
        self._last_print: dict[str, float] = {}
        self._tty = self._stream.isatty()
        self._jobs: dict[str, JobSnapshot] = {}
        self._live: Live | None = None
        self._last_state: dict[str, str] = {}

    def __enter__(self) -> JobsWatcher:
        if self._tty:
            self._live = Live(
                jobs_table([]), console=Console(file=self._stream), refresh_per_second=4
            )
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()

    def update(self, job: JobSnapshot) -> None:
        self._jobs[job.id] = job
        if self._live is not None:
            ordered = sorted(self._jobs.values(), key=lambda j: j.created_at, reverse=True)
            self._live.update(jobs_table(ordered))
            return
        job_id, state, now = job.id, str(job.state), time.monotonic()
        changed = self._last_state.get(job_id) != state
        if changed or now - self._last_print.get(job_id, 0.0) >= self._interval:
            self._last_state[job_id] = state
            self._last_print[job_id] = now
            print(
                printable(f"{job.id} {state} {progress_text(job)} {rate_text(job)} {job.path}"),
                file=self._stream,
                flush=True,
            )
