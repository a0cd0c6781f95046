"""The library's lifecycles as data: the states, and the moves allowed between them.

Two things the library persists have a lifecycle, each enforced by the store that owns it:

* an **upload** (``UploadState``; ``uploader.upload_state.UploadStore``): one S3 multipart upload;
* a **submission** (``SubmissionState``; ``uploader.notary.store.SubmissionStore``): our record of
  one notary submission, whose verdict is Apple's ``NotaryStatus``.

A notarisation run reports where it is as a ``NotaryStage``. ``Lifecycle`` is the table type any
caller may use for lifecycles of its own.

A store asked for a move its table does not hold raises ``IllegalTransition``: that is a bug in
the caller, never an input error, so it is not a ``NotarydError`` and no user is meant to see it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

S = TypeVar("S", bound=enum.Enum)


class IllegalTransition(RuntimeError):
    """A store was asked for a move its lifecycle table does not allow (a bug)."""


@dataclass(frozen=True)
class Lifecycle(Generic[S]):
    """A transition table: ``moves[a]`` is every state ``a`` may become. Staying put is allowed."""

    name: str
    moves: Mapping[S, frozenset[S]]

    def allows(self, current: S, new: S) -> bool:
        return new is current or new in self.moves.get(current, frozenset())

    def check(self, current: S, new: S, *, what: str = "") -> None:
        if not self.allows(current, new):
            label = f"{self.name} {what}".strip()
            raise IllegalTransition(f"{label} is {current.value}; it cannot become {new.value}")

    @property
    def terminal(self) -> frozenset[S]:
        return frozenset(state for state, nexts in self.moves.items() if not nexts)


def final(*states: S) -> dict[S, frozenset[S]]:
    """Table rows for states that never change again."""
    return {state: frozenset() for state in states}


# -- uploads ---------------------------------------------------------------------------------


class UploadState(enum.StrEnum):
    """Where one S3 multipart upload is (a row of ``uploads``)."""

    PLANNED = "planned"
    HASHING = "hashing"  # reported in events only: hashing happens before the row exists
    UPLOADING = "uploading"
    COMPLETING = "completing"
    COMPLETED = "completed"
    FAILED = "failed"
    ABORTED = "aborted"


_U = UploadState
UPLOAD_LIFECYCLE: Lifecycle[UploadState] = Lifecycle(
    "upload",
    {
        _U.HASHING: frozenset({_U.PLANNED}),
        # forget_parts sends an upload back to planned when S3 no longer knows its upload id
        _U.PLANNED: frozenset({_U.UPLOADING, _U.FAILED, _U.ABORTED}),
        _U.UPLOADING: frozenset({_U.PLANNED, _U.COMPLETING, _U.FAILED, _U.ABORTED}),
        # a run that died after sending Complete resumes by checking its parts again
        _U.COMPLETING: frozenset({_U.PLANNED, _U.UPLOADING, _U.COMPLETED, _U.FAILED, _U.ABORTED}),
        # failing aborts the multipart upload, so the next run starts a new upload (a new row)
        **final(_U.FAILED, _U.COMPLETED, _U.ABORTED),
    },
)


# -- submissions -----------------------------------------------------------------------------


class SubmissionState(enum.StrEnum):
    """Our record of one notary submission: made, its upload under way or done, then closed."""

    CREATED = "created"
    UPLOADING = "uploading"
    UPLOADED = "uploaded"
    DONE = "done"
    ABANDONED = "abandoned"


_S = SubmissionState
SUBMISSION_LIFECYCLE: Lifecycle[SubmissionState] = Lifecycle(
    "submission",
    {
        _S.CREATED: frozenset({_S.UPLOADING, _S.UPLOADED, _S.DONE, _S.ABANDONED}),
        _S.UPLOADING: frozenset({_S.UPLOADED, _S.DONE, _S.ABANDONED}),
        _S.UPLOADED: frozenset({_S.DONE, _S.ABANDONED}),
        **final(_S.DONE, _S.ABANDONED),
    },
)


class NotaryStatus(enum.StrEnum):
    """A submission's status as Apple's API spells it: the only place these strings live."""

    IN_PROGRESS = "In Progress"
    ACCEPTED = "Accepted"
    INVALID = "Invalid"
    REJECTED = "Rejected"

    @property
    def final(self) -> bool:
        return self is not NotaryStatus.IN_PROGRESS


# -- notarisation runs ------------------------------------------------------------------


class NotaryStage(enum.StrEnum):
    """Where a notarisation run is. DONE and FAILED end a run."""

    PREFLIGHT = "preflight"
    HASHING = "hashing"
    SUBMITTING = "submitting"
    UPLOADING = "uploading"
    WAITING = "waiting"
    FETCHING_LOG = "fetching_log"
    DONE = "done"
    FAILED = "failed"

    @property
    def running(self) -> bool:
        return self not in (NotaryStage.DONE, NotaryStage.FAILED)
