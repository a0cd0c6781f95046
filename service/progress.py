"""Progress display for the CLI: a live bar on a terminal, plain periodic lines otherwise.

``ProgressDisplay`` is an event hook (``uploader.events.Hook``): feed it engine and notary events.
It folds them into one ``uploader.progress.Progress`` and renders that: the rate is of bytes
actually handed to the network and the ETA is the bytes S3 has yet to acknowledge at that rate
(not rich's own guess from acknowledgements, which jump a part at a time). One unit system:
binary (KiB, MiB, GiB and MiB/s).

Everything the user sees goes through one console: progress lines, notices, retry reports
(``service.outages``) and log records (the root logger's stderr handlers are routed through
the bar while it is shown, so a record never lands glued onto it). ``tick()`` is called about
once a second by the command (``ticking``): waits that have no events of their own (Apple's
verdict, an outage between attempts) still print at least every 60 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator
from typing import Self, TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from service.outages import OutageReporter, human_duration
from uploader.events import (
    BytesSent,
    Event,
    HashProgress,
    NotaryRequestDone,
    NotaryStageChanged,
    Notice,
    PartAcknowledged,
    UploadStateChanged,
)
from uploader.lifecycle import NotaryStage, UploadState
from uploader.progress import Progress as RunProgress
from uploader.rate import Clock

# Plain output prints a progress line at least this often while bytes move (CI logs).
PLAIN_INTERVAL_SECONDS = 10.0
# While Apple decides, plain output says so this often.
WAITING_REPORT_SECONDS = 60.0
TICK_SECONDS = 1.0


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def human_rate(bytes_per_second: float) -> str:
    return f"{bytes_per_second / (1024 * 1024):.1f} MiB/s"


class _ThroughBar(logging.Handler):
    """Writes log records as lines of the bar's console, formatted like the handler it stands in for."""

    def __init__(self, bar: TransferBar, like: logging.Handler) -> None:
        super().__init__(like.level)
        self.setFormatter(like.formatter)
        for f in like.filters:
            self.addFilter(f)  # the redaction filter among them
        self._bar = bar

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._bar.message(self.format(record))
        except Exception:
            self.handleError(record)


class TransferBar:
    """A rich transfer bar on a terminal, plain lines elsewhere; a context manager.

    The base of the CLI's progress views (this module's ``ProgressDisplay`` and the daemon
    client's ``JobFollower``): subclasses decide what to show, this decides how.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        plain_interval_seconds: float = PLAIN_INTERVAL_SECONDS,
        first_label: str = "starting",
    ) -> None:
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._interval = plain_interval_seconds
        self._first_label = first_label
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._rerouted: list[tuple[logging.Handler, logging.Handler]] = []

    def __enter__(self) -> Self:
        if self._tty:
            self._route_logging()  # before rich redirects sys.stderr
            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[stats]}"),
                console=Console(file=self._stream),
            )
            self._progress.start()
            self._task = self._progress.add_task(self._first_label, total=None, stats="")
        return self

    def __exit__(self, *exc: object) -> None:
        root = logging.getLogger()
        for original, through in self._rerouted:
            root.removeHandler(through)
            root.addHandler(original)
        self._rerouted.clear()
        if self._progress is not None:
            self._progress.stop()

    def _route_logging(self) -> None:
        """Log records to this stream go through the bar's console while it is shown."""
        root = logging.getLogger()
        for handler in list(root.handlers):
            if isinstance(handler, logging.StreamHandler) and handler.stream in (
                    self._stream, sys.__stderr__, sys.stderr):
                through = _ThroughBar(self, handler)
                root.removeHandler(handler)
                root.addHandler(through)
                self._rerouted.append((handler, through))

    def message(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            print(text, file=self._stream, flush=True)

    def bar_stats(self) -> str:
        """What the bar shows right of it (terminal only; '' elsewhere)."""
        if self._progress is None or self._task is None:
            return ""
        return str(self._progress.tasks[0].fields.get("stats", ""))

    def show(self, label: str, done: int, total: int | None, stats: str) -> None:
        """Redraw the bar (terminal only)."""
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=label, completed=done,
                                  total=total or None, stats=stats)


class ProgressDisplay(TransferBar):
    """Shows packaging, hashing, upload and waiting from engine and notary events.

    The numbers come from one ``uploader.progress.Progress`` (the display feeds it every event);
    this class only decides when and how to show them.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        plain_interval_seconds: float = PLAIN_INTERVAL_SECONDS,
        progress: RunProgress | None = None,
        clock: Clock = time.time,
    ) -> None:
        super().__init__(stream, plain_interval_seconds=plain_interval_seconds)
        self.progress = progress if progress is not None else RunProgress(clock=clock)
        self._clock = clock
        self._last_line: float | None = None
        self._phase = "starting"
        self.outages = OutageReporter(self.message, clock=clock)
        self._waiting_since: float | None = None  # the wait for Apple's verdict
        self._last_check: float | None = None
        self._last_waiting_line: float | None = None

    def __call__(self, event: Event, /) -> None:
        self.progress.apply(event)
        self.outages(event)
        p = self.progress
        match event:
            case HashProgress(packaging=packaging):
                self._show("packaging" if packaging else "hashing", p.bytes_hashed)
            case UploadStateChanged(state=UploadState.HASHING):
                self._show("hashing", 0)
            case UploadStateChanged(state=UploadState.UPLOADING):
                self._show("uploading", p.bytes_done)
            case UploadStateChanged(state=UploadState.COMPLETED):
                self._show("uploaded", p.bytes_done, force=True)
            case PartAcknowledged() | BytesSent():
                self._show(self._phase, p.bytes_done)
            case Notice(text=text):
                self.message(f"notaryd: {text}")
            case NotaryRequestDone(endpoint="status"):
                self._last_check = self._clock()
            case NotaryStageChanged(stage=stage):
                self._stage_changed(event, stage)
            case _:
                pass

    def _stage_changed(self, event: NotaryStageChanged, stage: NotaryStage) -> None:
        status = f" ({event.notary_status})" if event.notary_status else ""
        sub = f" submission {event.submission_id}" if event.submission_id else ""
        if stage is NotaryStage.HASHING and event.detail:  # "packaging the bundle"
            self.message(f"notaryd: {event.detail}")
        else:
            self.message(f"notaryd: {stage.value}{sub}{status} {event.detail}".rstrip())
        if stage is NotaryStage.WAITING:
            if self._waiting_since is None:
                self._waiting_since = self._clock()
                self._last_waiting_line = self._clock()
                self._phase = "waiting for Apple"
                self._waiting()
        else:
            self._waiting_since = None

    def tick(self) -> None:
        """Called about once a second: time-based lines for waits without events of their own."""
        self.outages.tick()
        if self._waiting_since is not None:
            self._waiting()
        elif self._progress is not None and self._phase == "uploading":
            self._show(self._phase, self.progress.bytes_done)  # the rate falls when bytes stop

    def _waiting(self) -> None:
        assert self._waiting_since is not None
        now = self._clock()
        text = f"waiting for Apple's verdict for {human_duration(now - self._waiting_since)}"
        if self._last_check is not None:
            text += f"; last check {human_duration(now - self._last_check)} ago"
        if self._progress is not None:
            self.show(text, 0, None, "")
            return
        assert self._last_waiting_line is not None
        if now - self._last_waiting_line >= WAITING_REPORT_SECONDS:
            self._last_waiting_line = now
            self.message(f"notaryd: {text}")

    def speed(self) -> str:
        """'3.9 MiB/s, ETA 12m30s' from the fold: the rate of bytes sent, not acknowledged."""
        if self._phase in ("hashing", "packaging"):
            return human_rate(self.progress.hash_rate())
        left = self.progress.seconds_to_finish()
        eta = "-" if left is None or left == float("inf") else human_duration(left)
        return f"{human_rate(self.progress.rate())}, ETA {eta}"

    def _show(self, phase: str, done: int, *, force: bool = False) -> None:
        self._phase = phase
        total, retries = self.progress.bytes_total, self.progress.retries
        amount = f"{human_bytes(done)} of {human_bytes(total)}"
        if self._progress is not None:
            label = phase if not retries else f"{phase} ({retries} retries)"
            self.show(label, done, total, f"{amount}, {self.speed()}")
            return
        now = self._clock()
        if force or self._last_line is None or now - self._last_line >= self._interval:
            self._last_line = now
            pct = f" ({100 * done / total:.0f} %)" if total else ""
            print(f"notaryd: {phase} {amount}{pct}, {self.speed()}, {retries} retries",
                  file=self._stream, flush=True)


@contextlib.asynccontextmanager
async def ticking(display: ProgressDisplay, every_seconds: float = TICK_SECONDS) -> AsyncIterator[None]:
    """Call ``display.tick()`` about every second while the block runs (a task it owns)."""

    async def tick() -> None:
        while True:
            await asyncio.sleep(every_seconds)
            display.tick()

    task = asyncio.create_task(tick())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
