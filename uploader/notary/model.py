"""What a notarisation is given and what it gives back: ``NotaryConfig``, ``NotarizeRequest``,
``NotarizeOutcome`` and ``PreflightFailed``; what the pipeline's stages share with it
(``RunParts``, the ``Stage`` base) and the retry wording they use.

``uploader.notary.pipeline`` re-exports the four; they live here so that the stages it runs
(``submit_once``, ``never_twice``, ``verdict``) can use them without importing the runner.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from uploader.artifact import Artifact
from uploader.config import EngineConfig
from uploader.constants import DEFAULT_TICKET_URL, STUCK_AFTER_SECONDS
from uploader.errors import NotarydError
from uploader.events import Emitter
from uploader.keytext import KeySource
from uploader.lifecycle import NotaryStatus
from uploader.notary.client import NotaryClient
from uploader.notary.ends import StapleNote
from uploader.notary.errors import NetworkError, NotaryError
from uploader.notary.store import SubmissionStore
from uploader.retry import Retrier, RetryPolicy

# Calls whose failure should not end a notarisation: retry transient errors for this long.
API_RETRY = RetryPolicy(initial_delay_seconds=2.0, max_delay_seconds=120.0)
NOTARY_SERVICE = "the notary service"  # what a Retrying event waits for


@dataclass(frozen=True)
class NotaryConfig:
    api_url: str
    key_path: KeySource  # a .p8 file, or a key held in memory (environment, keychain)
    key_id: str
    issuer_id: str
    engine: EngineConfig
    state_dir: Path
    poll_initial_seconds: float = 10.0
    poll_max_seconds: float = 180.0
    stuck_after_seconds: float = STUCK_AFTER_SECONDS
    ticket_url: str = DEFAULT_TICKET_URL
    staple_max_wait_seconds: float = 1800.0
    work_dir: Path | None = None  # zips made from bundles (NOTARYD_WORK_DIR); None: state_dir

    @property
    def work_dir_in_effect(self) -> Path:
        return self.work_dir or self.state_dir


@dataclass(frozen=True)
class NotarizeRequest:
    path: Path
    name: str | None = None
    webhook: str | None = None
    skip_preflight: bool = False
    wait: bool = True
    staple: bool = True  # after Accepted, for a .app, .dmg or .pkg input
    force: bool = False  # submit even if this archive was Accepted before
    keep_archive: bool = False  # keep the zip made from a bundle
    artifact: Artifact | None = None  # ``path`` as the edge opened it; None: opened by ``run``


@dataclass(frozen=True)
class NotarizeOutcome:
    path: Path
    submission_id: str | None
    status: str  # a final NotaryStatus, IN_PROGRESS (with wait=False), or one Apple added
    log_path: Path | None
    report: str
    staple: StapleNote | None = None

    @property
    def accepted(self) -> bool:
        return self.status == NotaryStatus.ACCEPTED


class PreflightFailed(NotarydError):
    """The archive has signing problems the notary service would reject; nothing was uploaded."""

    advice = ("preflight found problems the notary service rejects; fix them and rebuild, "
              "or pass --skip-preflight to submit anyway")

    def __init__(self, path: Path, report: str) -> None:
        super().__init__(f"{path}: {self.advice}")
        self.report = report  # the full report, printed after the one-line error


def why(error: NotaryError) -> str:
    """What went wrong, without the advice (the retry line says what happens next)."""
    return error.cause if isinstance(error, NetworkError) else str(error)


@dataclass(frozen=True)
class RunParts:
    """What the stages of a ``Notarizer``'s runs share with it."""

    client: Callable[[], Awaitable[NotaryClient]]  # the Notarizer's, made on first use
    config: NotaryConfig
    submissions: SubmissionStore
    emit: Emitter
    retrier: Retrier  # on API_RETRY
    sleep: Callable[[float], Awaitable[None]]
    clock: Callable[[], float]


class Stage:
    """A stage of a run, holding its ``RunParts`` under the names the ``Notarizer`` uses."""

    def __init__(self, parts: RunParts) -> None:
        self._client_of = parts.client
        self._config = parts.config
        self._submissions = parts.submissions
        self._emit = parts.emit
        self._retrier = parts.retrier
        self._sleep = parts.sleep
        self._clock = parts.clock

    async def client(self) -> NotaryClient:
        return await self._client_of()
