"""One fold of the engine's and pipeline's events into the progress of one run.

``Progress`` is a hook (``uploader.events.Hook``): hand it every event of one run and it keeps
what everybody wants to know about that run. A caller's displays and metrics and the
pipeline's credential-expiry projection all read this one fold instead of folding events
themselves. Event-loop thread only, like every hook.

Bytes: ``bytes_done`` counts what S3 acknowledged and the state store committed, so it never
moves backwards within an upload; ``bytes_sent`` counts every byte handed to the network, resent
ones included (``bytes_resent``). The rate is measured on bytes sent: that is the link's speed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .events import (
    BytesSent,
    CredentialsIssued,
    Event,
    HashProgress,
    NotaryStageChanged,
    PartAcknowledged,
    PartRetried,
    UploadStateChanged,
)
from .lifecycle import NotaryStage, UploadState
from .rate import Clock, RateMeter

# Stages during which Apple holds a submission it has not decided on.
SUBMISSION_PENDING_STAGES = frozenset({NotaryStage.UPLOADING, NotaryStage.WAITING})
# Upload states after which the temporary S3 credentials are no longer needed.
UPLOAD_FINISHED = frozenset({UploadState.COMPLETED, UploadState.FAILED, UploadState.ABORTED})
# Stages after which no upload (and so no credential) is in play.
STAGES_PAST_UPLOAD = frozenset(
    {NotaryStage.WAITING, NotaryStage.FETCHING_LOG, NotaryStage.DONE, NotaryStage.FAILED}
)


@dataclass
class Progress:
    bytes_total: int = 0
    bytes_hashed: int = 0
    bytes_done: int = 0
    bytes_sent: int = 0
    bytes_resent: int = 0
    retries: int = 0
    upload_state: UploadState | None = None
    stage: NotaryStage | None = None
    stage_detail: str = ""
    submission_id: str | None = None
    notary_status: str | None = None
    submitted_at: float | None = None  # Unix time the submission was created
    credentials_expire_at: float | None = None  # Unix time; None when no upload holds any
    rate_window_seconds: float = 20.0
    clock: Clock = field(default=time.monotonic, repr=False)
    _meter: RateMeter = field(init=False, repr=False)

    _hash_meter: RateMeter = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._meter = RateMeter(self.rate_window_seconds, self.clock)
        self._hash_meter = RateMeter(self.rate_window_seconds, self.clock)

    def __call__(self, event: Event, /) -> None:
        self.apply(event)

    def apply(self, event: Event) -> None:
        match event:
            case BytesSent(nbytes=nbytes, resent=resent):
                self.bytes_sent += nbytes
                if resent:
                    self.bytes_resent += nbytes
                self._meter.add(nbytes)
            case PartAcknowledged(nbytes=nbytes):
                self.bytes_done += nbytes
                if self.bytes_total:
                    self.bytes_done = min(self.bytes_done, self.bytes_total)
            case PartRetried():
                self.retries += 1
            case HashProgress(bytes_hashed=hashed, bytes_total=total):
                if hashed >= self.bytes_hashed:  # the first (0) starts the meter's clock
                    self._hash_meter.add(hashed - self.bytes_hashed)
                self.bytes_hashed = hashed
                self.bytes_total = total or self.bytes_total
            case UploadStateChanged(state=state, bytes_total=total, bytes_done=done):
                self.upload_state = state
                self.bytes_total = total or self.bytes_total
                self.bytes_done = self.bytes_total if state is UploadState.COMPLETED else done
                if state in UPLOAD_FINISHED:
                    self.credentials_expire_at = None
            case CredentialsIssued(expires_at=expires_at):
                self.credentials_expire_at = expires_at
            case NotaryStageChanged(stage=stage):
                self.stage = stage
                self.stage_detail = event.detail
                self.submission_id = event.submission_id or self.submission_id
                self.notary_status = event.notary_status or self.notary_status
                if event.submitted_at is not None:
                    self.submitted_at = event.submitted_at
                if stage in STAGES_PAST_UPLOAD:
                    self.credentials_expire_at = None
            case _:
                pass

    # -- what readers ask ----------------------------------------------------------------------

    def rate(self) -> float:
        """Bytes per second handed to the network over the last ``rate_window_seconds``."""
        return self._meter.rate()

    def hash_rate(self) -> float:
        """Bytes per second hashed (or packaged) over the last ``rate_window_seconds``."""
        return self._hash_meter.rate()

    def seconds_to_finish(self, min_history_seconds: float = 10.0) -> float | None:
        """Projected seconds until every byte is acknowledged; None with too little history."""
        if self._meter.history_seconds() < min_history_seconds:
            return None
        left = max(0, self.bytes_total - self.bytes_done)
        if left == 0:
            return 0.0
        rate = self._meter.rate()
        return left / rate if rate > 0 else float("inf")

    @property
    def pending_since(self) -> float | None:
        """When the submission Apple has not decided on yet was created, if there is one."""
        return self.submitted_at if self.stage in SUBMISSION_PENDING_STAGES else None

    def settle(self) -> None:
        """The run ended, however it ended: nothing is in flight, nothing is pending."""
        self._meter.reset()
        self.credentials_expire_at = None
        self.stage = None if self.stage is None or self.stage.running else self.stage
