"""Saying what a retrying wait waits for: one line per change, and at least every 60 s.

notaryd rides out outages (that is its point), but a person watching must see what it is
doing: ``S3 unreachable for 4m10s (connection refused); next part attempt in 8 s``. The
``OutageReporter`` is an event hook fed ``PartRetried`` and ``Retrying`` (a service failing) and
the events that show a service answering again (``PartAcknowledged``, upload state changes, a
2xx ``NotaryRequestDone``). It prints when an outage starts, when its error changes, when it
ends ("S3 answering again after 4m10s"), and on ``tick()`` whenever ``report_every_seconds``
passed without a line. Isolated part failures on a lossy link are no outage: S3 counts as out
after ``S3_FAILURES_FOR_OUTAGE`` part failures in a row with no part acknowledged.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from uploader.events import (
    Event,
    NotaryRequestDone,
    PartAcknowledged,
    PartRetried,
    Retrying,
    RetryReason,
    UploadStateChanged,
)
from uploader.rate import Clock

REPORT_EVERY_SECONDS = 60.0
S3_FAILURES_FOR_OUTAGE = 3
MAX_ERROR_CHARS = 160
S3 = "S3"
_NETWORK_REASONS = frozenset({RetryReason.CONNECTION_RESET, RetryReason.TIMEOUT, RetryReason.STALL})


def human_duration(seconds: float) -> str:
    """'45s', '4m10s', '2h03m'."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


@dataclass
class _Outage:
    service: str
    since: float
    trouble: str  # "S3 unreachable"
    error: str
    next_attempt: str
    next_at: float
    failures: int = 0
    reported_at: float | None = None


class OutageReporter:
    """An event hook that reports retrying waits through ``say``; event-loop thread only."""

    def __init__(self, say: Callable[[str], None], *, clock: Clock = time.time,
                 report_every_seconds: float = REPORT_EVERY_SECONDS) -> None:
        self._say = say
        self._clock = clock
        self._every = report_every_seconds
        self._outages: dict[str, _Outage] = {}

    def __call__(self, event: Event, /) -> None:
        match event:
            case PartRetried(reason=reason, error=error, delay_seconds=delay):
                trouble = "unreachable" if reason in _NETWORK_REASONS else f"failing ({reason.value})"
                self._failed(S3, f"{S3} {trouble}", error, "next part attempt", delay,
                             S3_FAILURES_FOR_OUTAGE)
            case Retrying(service=service, error=error, next_attempt=next_attempt,
                          delay_seconds=delay):
                self._failed(service, f"{service} not answering", error, next_attempt, delay, 1)
            case PartAcknowledged() | UploadStateChanged():
                self._answered(S3)
            case NotaryRequestDone(code=code) if code.startswith("2"):
                for service in [s for s in self._outages if s != S3]:
                    self._answered(service)
            case _:
                pass

    def tick(self) -> None:
        now = self._clock()
        for outage in self._outages.values():
            if outage.reported_at is not None and now - outage.reported_at >= self._every:
                self._report(outage)

    def _failed(self, service: str, trouble: str, error: str, next_attempt: str, delay: float,
                failures_for_outage: int) -> None:
        now = self._clock()
        outage = self._outages.get(service)
        if outage is None:
            outage = self._outages[service] = _Outage(service, now, trouble, "", next_attempt, now)
        changed = (outage.trouble, outage.error) != (trouble, _short(error))
        outage.trouble, outage.error = trouble, _short(error)
        outage.next_attempt, outage.next_at = next_attempt, now + delay
        outage.failures += 1
        if outage.failures < failures_for_outage:
            return
        due = outage.reported_at is None or now - outage.reported_at >= self._every
        if changed or due:
            self._report(outage)

    def _answered(self, service: str) -> None:
        outage = self._outages.pop(service, None)
        if outage is not None and outage.reported_at is not None:
            self._say(f"notaryd: {service} answering again after "
                      f"{human_duration(self._clock() - outage.since)}")

    def _report(self, outage: _Outage) -> None:
        now = self._clock()
        outage.reported_at = now
        lasted = now - outage.since
        for_how_long = f" for {human_duration(lasted)}" if lasted >= 1 else ""
        error = f" ({outage.error})" if outage.error else ""
        wait = max(0.0, outage.next_at - now)
        self._say(f"notaryd: {outage.trouble}{for_how_long}{error}; "
                  f"{outage.next_attempt} in {wait:.0f} s")


_CANNOT_CONNECT = re.compile(r"(?:\w+Error: )?Cannot connect to host (\S+) ssl:\S+ \[([^\]]*)\]")


def _short(error: str) -> str:
    """One line, at most ``MAX_ERROR_CHARS``; aiohttp's connect failure said plainly."""
    line = " ".join(error.split())
    line = _CANNOT_CONNECT.sub(lambda m: f"cannot connect to {m.group(1)}: {m.group(2)}", line)
    return line if len(line) <= MAX_ERROR_CHARS else line[:MAX_ERROR_CHARS - 1] + "…"
