"""Structured log lines for the daemon: logfmt (``key=value``) on stderr.

Each line reads ``ts=... level=info logger=notaryd.x msg="job queued" job=ab12 path="/My App.zip"``.
Messages follow one convention: a short fixed text, then ``kv(...)`` fields, so lines can be
grepped by text and parsed by key. Values with spaces, quotes or ``=`` are quoted. A line never
holds a raw control character (paths, job names and server texts come from outside): the whole
line goes through ``uploader.terminal.printable``, so one record is always one harmless line.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

from uploader.terminal import printable

_BARE = re.compile(r"^[^\s\"=]+$")
_FIELDS_START = re.compile(r"\s(?=[A-Za-z_][\w.]*=)")


def quote(value: Any) -> str:
    text = "-" if value is None else str(value)
    if text and _BARE.match(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def kv(**fields: Any) -> str:
    """``key=value`` pairs for a log message."""
    return " ".join(f"{key}={quote(value)}" for key, value in fields.items())


@dataclass(eq=False)
class Occasional:
    """At most one log line per ``interval_seconds`` for an event that can come in floods (a
    refusal per request of a flood); ``times`` says how many happened since the line before."""

    logger: logging.Logger
    message: str
    _: KW_ONLY
    level: int = logging.WARNING
    interval_seconds: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _last: float | None = field(default=None, init=False)
    _count: int = field(default=0, init=False)

    def happened(self, **fields: Any) -> None:
        self._count += 1
        now = self.clock()
        if self._last is not None and now - self._last < self.interval_seconds:
            return
        self.logger.log(self.level, "%s %s", self.message, kv(**fields, times=self._count))
        self._last, self._count = now, 0


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        # "fixed text key=value ..." -> msg="fixed text" key=value ...
        split = _FIELDS_START.search(message)
        text, fields = (message[: split.start()], message[split.end() :]) if split else (message, "")
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = (
            f"ts={ts}.{int(record.msecs):03d}Z level={record.levelname.lower()} "
            f"logger={record.name} msg={quote(text)}"
        )
        if fields:
            line += " " + fields
        if record.exc_info:
            line += " exc=" + quote(self.formatException(record.exc_info))
        elif record.exc_text:  # already formatted (and redacted) by uploader.redaction
            line += " exc=" + quote(record.exc_text)
        return printable(line)


def use_logfmt(level: int | None = None) -> None:
    """Switch the root logger's handlers (set up by the CLI) to logfmt."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig()
    for handler in root.handlers:
        handler.setFormatter(LogfmtFormatter())
    if level is not None:
        root.setLevel(level)
