"""Progress display for the CLI: a live bar on a terminal, plain periodic lines otherwise.

It is an event hook (``uploader.events.Hook``): feed it engine and notary events. Rates are a
moving average over the last ``window_seconds`` so the ETA follows the link as it is now.
"""

from __future__ import annotations

import sys
import time
from typing import Self, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from uploader.events import (
    Event,
    HashProgress,
    NotaryStageChanged,
    PartAcknowledged,
    PartRetried,
    UploadState,
    UploadStateChanged,
)
from uploader.rate import RateMeter


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


class TransferBar:
    """A rich transfer bar on a terminal, plain lines elsewhere; a context manager.

    The base of the CLI's progress views (this module's ``ProgressDisplay`` and the daemon
    client's ``JobFollower``): subclasses decide what to show, this decides how.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        plain_interval_seconds: float = 10.0,
        first_label: str = "starting",
    ) -> None:
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._interval = plain_interval_seconds
        self._first_label = first_label
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> Self:
        if self._tty:
            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), DownloadColumn(binary_units=True),
                TransferSpeedColumn(), TimeRemainingColumn(),
                console=Console(file=self._stream),
            )
            self._progress.start()
            self._task = self._progress.add_task(self._first_label, total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def message(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self._stream, flush=True)


class ProgressDisplay(TransferBar):
    """Shows hashing and upload progress from engine and notary events."""

    def __init__(self, stream: TextIO | None = None, *, plain_interval_seconds: float = 10.0) -> None:
        super().__init__(stream, plain_interval_seconds=plain_interval_seconds)
        self._last_line = 0.0
        self._meter = RateMeter()
        self._total = 0
        self._done = 0
        self._retries = 0
        self._phase = "starting"

    def __call__(self, event: Event) -> None:
        if isinstance(event, HashProgress):
            self._set("hashing", event.bytes_hashed, event.bytes_total)
        elif isinstance(event, UploadStateChanged):
            if event.state is UploadState.UPLOADING:
                self._set("uploading", event.bytes_done, event.bytes_total)
            elif event.state is UploadState.COMPLETED:
                self._set("uploaded", event.bytes_total, event.bytes_total, force=True)
            elif event.state is UploadState.HASHING:
                self._set("hashing", 0, event.bytes_total)
        elif isinstance(event, PartAcknowledged):
            self._meter.add(event.nbytes)
            self._set(self._phase, self._done + event.nbytes, self._total)
        elif isinstance(event, PartRetried):
            self._retries += 1
        elif isinstance(event, NotaryStageChanged):
            status = f" ({event.notary_status})" if event.notary_status else ""
            sub = f" submission {event.submission_id}" if event.submission_id else ""
            self.message(f"notaryd: {event.stage.value}{sub}{status} {event.detail}".rstrip())

    def _set(self, phase: str, done: int, total: int, *, force: bool = False) -> None:
        self._phase, self._done, self._total = phase, done, total
        if self._progress is not None and self._task is not None:
            label = phase if not self._retries else f"{phase} ({self._retries} retries)"
            self._progress.update(self._task, description=label, completed=done, total=total or None)
            return
        now = time.monotonic()
        if force or now - self._last_line >= self._interval:
            self._last_line = now
            rate = self._meter.rate()
            eta = f", ETA {int((total - done) / rate)} s" if rate > 0 and total > done else ""
            pct = f" ({100 * done / total:.0f} %)" if total else ""
            print(
                f"notaryd: {phase} {human_bytes(done)} of {human_bytes(total)}{pct}, "
                f"{human_bytes(rate)}/s{eta}, {self._retries} retries",
                file=self._stream, flush=True,
            )
