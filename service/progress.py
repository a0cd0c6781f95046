"""Progress display for the CLI: a live bar on a terminal, plain periodic lines otherwise.

``ProgressDisplay`` is an event hook (``uploader.events.Hook``): feed it engine and notary events.
It folds them into one ``uploader.progress.Progress`` (whose rate is a moving average, so the ETA
follows the link as it is now) and renders that.
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
    UploadStateChanged,
)
from uploader.lifecycle import UploadState
from uploader.progress import Progress as RunProgress
from uploader.rate import Clock


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
    """Shows hashing and upload progress from engine and notary events.

    The numbers come from one ``uploader.progress.Progress`` (the display feeds it every event);
    this class only decides when and how to show them.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        plain_interval_seconds: float = 10.0,
        progress: RunProgress | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(stream, plain_interval_seconds=plain_interval_seconds)
        self.progress = progress if progress is not None else RunProgress(clock=clock)
        self._clock = clock
        self._last_line: float | None = None
        self._phase = "starting"

    def __call__(self, event: Event, /) -> None:
        self.progress.apply(event)
        p = self.progress
        match event:
            case HashProgress():
                self._show("hashing", p.bytes_hashed)
            case UploadStateChanged(state=UploadState.HASHING):
                self._show("hashing", 0)
            case UploadStateChanged(state=UploadState.UPLOADING):
                self._show("uploading", p.bytes_done)
            case UploadStateChanged(state=UploadState.COMPLETED):
                self._show("uploaded", p.bytes_done, force=True)
            case PartAcknowledged():
                self._show(self._phase, p.bytes_done)
            case NotaryStageChanged(stage=stage):
                status = f" ({event.notary_status})" if event.notary_status else ""
                sub = f" submission {event.submission_id}" if event.submission_id else ""
                self.message(f"notaryd: {stage.value}{sub}{status} {event.detail}".rstrip())
            case _:
                pass

    def _show(self, phase: str, done: int, *, force: bool = False) -> None:
        self._phase = phase
        total, retries = self.progress.bytes_total, self.progress.retries
        if self._progress is not None and self._task is not None:
            label = phase if not retries else f"{phase} ({retries} retries)"
            self._progress.update(self._task, description=label, completed=done, total=total or None)
            return
        now = self._clock()
        if force or self._last_line is None or now - self._last_line >= self._interval:
            self._last_line = now
            rate = self.progress.rate()
            eta = f", ETA {int((total - done) / rate)} s" if rate > 0 and total > done else ""
            pct = f" ({100 * done / total:.0f} %)" if total else ""
            print(
                f"notaryd: {phase} {human_bytes(done)} of {human_bytes(total)}{pct}, "
                f"{human_bytes(rate)}/s{eta}, {retries} retries",
                file=self._stream, flush=True,
            )
