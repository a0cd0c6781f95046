"""Typed progress events and the hook interface through which the engine reports them.

The library knows nothing about Prometheus or terminals: a caller's metrics and
``uploader.progress.Progress`` (the one fold of a run's events, which displays and the pipeline
read) subscribe to these. Hooks are called on the event-loop thread and must not
block; they must also not raise (an exception in a hook is logged and dropped by the emitter).

Bytes are reported twice over on purpose: ``BytesSent`` counts every byte handed to the network
(``resent=True`` for bytes an earlier attempt, in this process or before a restart, had already
sent: the engine records how far each attempt got), ``PartAcknowledged`` counts the bytes
S3 has confirmed and the state store has committed. Progress therefore never moves backwards.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from .lifecycle import NotaryStage, UploadState

log = logging.getLogger(__name__)


class RetryReason(enum.StrEnum):
    """Why a part was retried; a closed set so it can be a metric label."""

    CONNECTION_RESET = "connection_reset"
    TIMEOUT = "timeout"
    STALL = "stall"
    SERVER_ERROR = "server_error"
    THROTTLED = "throttled"
    REQUEST_TIMEOUT = "request_timeout"
    BAD_DIGEST = "bad_digest"
    OTHER = "other"


@dataclass(frozen=True)
class BytesSent:
    target: str
    nbytes: int
    resent: bool


@dataclass(frozen=True)
class PartAcknowledged:
    target: str
    part_number: int
    nbytes: int


@dataclass(frozen=True)
class PartRetried:
    target: str
    part_number: int
    reason: RetryReason
    attempt: int
    error: str = ""  # what the last attempt ran into, one line
    delay_seconds: float = 0.0  # until the next attempt of this part


@dataclass(frozen=True)
class HashProgress:
    target: str
    bytes_hashed: int
    bytes_total: int
    packaging: bool = False  # a bundle being zipped (hashed as it is written)


@dataclass(frozen=True)
class UploadStateChanged:
    target: str
    state: UploadState
    bytes_total: int
    bytes_done: int
    detail: str = ""



@dataclass(frozen=True)
class NotaryStageChanged:
    target: str  # the archive path
    stage: NotaryStage
    submission_id: str | None = None
    notary_status: str | None = None  # a lifecycle.NotaryStatus value
    submitted_at: float | None = None  # Unix time the submission was created (for "oldest in progress")
    detail: str = ""


@dataclass(frozen=True)
class NotaryRequestDone:
    """One HTTP exchange with the notary API; ``code`` is the HTTP status or "error"."""

    endpoint: str  # "submit" | "status" | "logs" | "history" | "log_download"
    code: str


@dataclass(frozen=True)
class CredentialsIssued:
    target: str
    expires_at: float  # Unix time


@dataclass(frozen=True)
class Retrying:
    """A call to a service failed and will be tried again (parts report ``PartRetried``)."""

    target: str
    service: str  # what has to answer again: "S3", "the notary service", ...
    error: str  # what the last attempt ran into, one line
    next_attempt: str  # "next submit attempt"
    delay_seconds: float


@dataclass(frozen=True)
class Notice:
    """A line a person following the run should read (resuming, waiting for another run)."""

    target: str
    text: str


Event = (
    BytesSent
    | PartAcknowledged
    | PartRetried
    | HashProgress
    | UploadStateChanged
    | NotaryStageChanged
    | NotaryRequestDone
    | CredentialsIssued
    | Retrying
    | Notice
)


class Hook(Protocol):
    def __call__(self, event: Event, /) -> None: ...


class Emitter:
    """Fans events out to hooks, isolating the engine from a hook that raises."""

    def __init__(self, hooks: Iterable[Hook] = ()) -> None:
        self._hooks = list(hooks)

    def __call__(self, event: Event) -> None:
        for hook in self._hooks:
            try:
                hook(event)
            except Exception:
                log.exception("progress hook %r failed on %r", hook, event)
