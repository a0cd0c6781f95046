"""Showing daemon jobs in a terminal: a live bar for one job, a table for all.

Input is the API's job snapshots (dicts, see ``openapi.JOB_SCHEMA``). On a terminal rich draws
and redraws; otherwise lines are printed: one per state change, and progress at most every
``plain_interval_seconds`` (so CI logs stay readable).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table

from service.progress import TransferBar, human_bytes

Snapshot = Mapping[str, Any]


def progress_text(job: Snapshot) -> str:
    total, done = int(job.get("bytes_total") or 0), int(job.get("bytes_done") or 0)
    if job.get("state") == "hashing" and total:
        return f"hashed {100 * int(job.get('bytes_hashed') or 0) / total:.0f} %"
    if not total:
        return "-"
    return f"{human_bytes(done)} / {human_bytes(total)} ({100 * done / total:.0f} %)"


def rate_text(job: Snapshot) -> str:
    rate = float(job.get("rate_bytes_per_second") or 0)
    return f"{human_bytes(rate)}/s" if rate else "-"


def eta_text(job: Snapshot) -> str:
    eta = job.get("eta_seconds")
    if eta is None:
        return "-"
    minutes, seconds = divmod(int(eta), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def jobs_table(jobs: Iterable[Snapshot]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("ID", "STATE", "PROGRESS", "RATE", "ETA", "SUBMISSION", "PATH"):
        table.add_column(column, no_wrap=column != "PATH")
    for job in jobs:
        state = str(job["state"])
        if job.get("error") and state == "failed":
            state = "failed!"
        table.add_row(
            str(job["id"]),
            state,
            progress_text(job),
            rate_text(job),
            eta_text(job),
            str(job.get("submission_id") or "-"),
            str(job["path"]),
        )
    return table


def describe(job: Snapshot) -> str:
    """``notaryd job ID``: one field per line."""
    fields = [
        ("id", job["id"]),
        ("path", job["path"]),
        ("name", job.get("name") or "-"),
        ("state", job["state"]),
        ("progress", progress_text(job)),
        ("rate", rate_text(job)),
        ("eta", eta_text(job)),
        ("submission", job.get("submission_id") or "-"),
        ("notary status", job.get("notary_status") or "-"),
        ("error", job.get("error") or "-"),
        ("created", _time(job.get("created_at"))),
        ("started", _time(job.get("started_at"))),
        ("finished", _time(job.get("finished_at"))),
    ]
    return "\n".join(f"{key + ':':<15}{value}" for key, value in fields)


def _time(value: Any) -> str:
    if value is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(value)))


class JobFollower(TransferBar):
    """Shows one job's progress (``notaryd submit --wait``); feed it snapshots."""

    def __init__(self, stream: TextIO | None = None, *, plain_interval_seconds: float = 10.0) -> None:
        super().__init__(stream, plain_interval_seconds=plain_interval_seconds, first_label="queued")
        self._last_state: str | None = None
        self._last_line = 0.0

    def update(self, job: Snapshot) -> None:
        state = str(job["state"])
        if state != self._last_state:
            self._last_state = state
            sub = f" (submission {job['submission_id']})" if job.get("submission_id") else ""
            self.message(f"notaryd: job {job['id']} {state}{sub}")
        total = int(job.get("bytes_total") or 0) or None
        hashing = state == "hashing"
        done = int(job.get("bytes_hashed" if hashing else "bytes_done") or 0)
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=state, completed=done, total=total)
            return
        now = time.monotonic()
        if state in {"hashing", "uploading"} and now - self._last_line >= self._interval:
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
        self._jobs: dict[str, Snapshot] = {}
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

    def update(self, job: Snapshot) -> None:
        self._jobs[str(job["id"])] = job
        if self._live is not None:
            ordered = sorted(self._jobs.values(), key=lambda j: float(j["created_at"]), reverse=True)
            self._live.update(jobs_table(ordered))
            return
        job_id, state, now = str(job["id"]), str(job["state"]), time.monotonic()
        changed = self._last_state.get(job_id) != state
        if changed or now - self._last_print.get(job_id, 0.0) >= self._interval:
            self._last_state[job_id] = state
            self._last_print[job_id] = now
            print(
                f"{job['id']} {state} {progress_text(job)} {rate_text(job)} {job['path']}",
                file=self._stream,
                flush=True,
            )
