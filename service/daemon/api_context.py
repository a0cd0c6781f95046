"""What the control API's handlers share with the live page's: the app's keys, its settings,
the error a handler raises (``ApiError``, answered as JSON by ``api``'s middleware) and the check
of an archive path a job is asked for (``POST /v1/jobs`` and the page's resume).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from uploader.artifact import Artifact, UnsupportedInput
from uploader.errors import SourceChangedError
from uploader.source_file import FileIdentity, SourceRejected, refuse_non_utf8

from .broker import Broker
from .logfmt import Occasional
from .metrics import DaemonMetrics
from .scheduler import Scheduler

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# A request body (at most client_max_size, 64 KiB) must arrive within this many seconds.
BODY_TIMEOUT_SECONDS = 10.0

@dataclass(frozen=True)
class ApiConfig:
    token: str
    token_hint: str  # where the CLI finds the token, for the 401 hint
    allowed_roots: tuple[Path, ...]
    version: str
    heartbeat_seconds: float = 15.0
    # host names (lower case) accepted in the Host header besides IP literals and "localhost"
    host_names: frozenset[str] = frozenset()
    # listening beyond loopback: /metrics and /healthz (no secrets) answer to any name, so a
    # Prometheus can scrape the machine by its DNS name
    probes_answer_any_host: bool = False
    body_timeout_seconds: float = BODY_TIMEOUT_SECONDS


SCHEDULER = web.AppKey("scheduler", Scheduler)
METRICS = web.AppKey("metrics", DaemonMetrics)
BROKER = web.AppKey("broker", Broker)
CONFIG = web.AppKey("config", ApiConfig)
STREAMS_REFUSED = web.AppKey("streams_refused", Occasional)


class ApiError(Exception):
    def __init__(self, status: int, error: str, hint: str | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.hint = hint


def check_archive_path(raw: str, allowed_roots: Sequence[Path]) -> tuple[Path, FileIdentity | None]:
    """Resolve ``raw`` and check it is a readable, non-empty file under an allowed root.

    Returns (resolved path, identity of the file as opened and checked). Blocking: call it off
    the loop.
    """
    try:
        refuse_non_utf8(raw)
    except SourceRejected as exc:
        raise ApiError(400, str(exc)) from None
    given = Path(raw).expanduser()
    if not given.is_absolute():
        raise ApiError(400, f"path must be absolute, got {raw!r}", "the daemon does not know your working directory")
    resolved = Path(os.path.realpath(given))
    roots = [Path(os.path.realpath(root)) for root in allowed_roots]
    if not any(resolved.is_relative_to(root) for root in roots):
        raise _outside_roots(f"{given} is outside the allowed roots", allowed_roots)
    try:
        opened = Artifact.open(resolved, allowed_roots)
    except UnsupportedInput as exc:
        raise ApiError(400, str(exc)) from None  # it says what to give instead
    except SourceRejected as exc:
        if exc.outside_roots:
            raise _outside_roots(str(exc), allowed_roots) from None
        raise ApiError(400, str(exc)) from None
    except SourceChangedError as exc:  # cannot happen without an expected identity; be plain
        raise ApiError(409, str(exc)) from None
    if opened.kind.folder:
        return resolved, None  # a bundle: the pipeline zips it (uploader.bundle_zip)
    if opened.identity.size == 0:
        raise ApiError(400, f"{given} is empty")
    return resolved, opened.identity


def _outside_roots(error: str, allowed_roots: Sequence[Path]) -> ApiError:
    shown = ", ".join(str(r) for r in allowed_roots) or "(none)"
    return ApiError(
        403,
        f"{error} ({shown})" if "allowed roots (" not in error else error,
        "move the archive under one of them, or add its folder to NOTARYD_ALLOWED_ROOTS "
        "and restart the daemon",
    )
