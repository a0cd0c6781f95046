"""Fencing: every write of a run, and every S3 call, first checks that the caller still holds it.

The library knows nothing of who holds a run or how; the caller (the daemon's fleet: "this
worker still holds lease generation G of job J") hands a ``Fence`` around the run with
``fenced_by``, like ``source_file.confine_to`` for the allowed roots: a context variable, so
every store write and S3 call inside it, on any task or worker thread it starts, is fenced.

* ``UploadStore`` and ``SubmissionStore`` call ``Fence.check(tx)`` inside the transaction of each
  write, before the write: a lost hold raises ``LeaseLost`` and nothing of it is written (the
  check and the write commit together or not at all).
* The engine calls ``check_fence(db)`` before each S3 call (CreateMultipartUpload, UploadPart,
  CompleteMultipartUpload, AbortMultipartUpload, ListParts, HeadObject), so a run that lost its
  hold makes no further S3 call.
* ``recorded_identity`` / ``record_identity``: what the holder of the work knows of the file
  across hosts (``source_file.SharedIdentity``), so a successor trusts the hash of an unchanged
  file instead of reading it again.

Outside ``fenced_by`` (the SQLite default, the CLI) nothing is checked: behaviour is unchanged.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any, Protocol

from uploader.database import Database, Transaction
from uploader.source_file import SharedIdentity


class Fence(Protocol):
    async def check(self, tx: Transaction) -> None:
        """Raise ``LeaseLost`` (or a subclass) unless the caller still holds the run; inside
        ``tx``, so that the hold cannot be taken away before ``tx`` commits."""

    async def recorded_identity(self) -> SharedIdentity | None:
        """The file's identity as the run's earlier holder recorded it, if any."""

    async def record_identity(self, identity: SharedIdentity) -> None:
        """Record the file's identity for a successor (a fenced write itself)."""


_fence: contextvars.ContextVar[Fence | None] = contextvars.ContextVar("notaryd_fence", default=None)


@contextlib.contextmanager
def fenced_by(fence: Fence) -> Iterator[None]:
    """Inside this block every fenced write and S3 call first checks ``fence``."""
    token = _fence.set(fence)
    try:
        yield
    finally:
        _fence.reset(token)


def current_fence() -> Fence | None:
    return _fence.get()


@contextlib.asynccontextmanager
async def fenced_transaction(db: Database) -> AsyncIterator[Transaction]:
    """A transaction whose writes happen only if the current fence (if any) still holds."""
    async with db.transaction() as tx:
        fence = _fence.get()
        if fence is not None:
            await fence.check(tx)
        yield tx


async def fenced_execute(db: Database, sql: str, params: Iterable[Any] = ()) -> int:
    """``db.execute`` (lastrowid for INSERT, else the rowcount), with the fence's check in the
    same transaction when there is a fence; exactly ``db.execute`` when there is none."""
    if _fence.get() is None:
        return await db.execute(sql, params)
    async with fenced_transaction(db) as tx:
        return await tx.execute(sql, params)


async def check_fence(db: Database) -> None:
    """Before an S3 call: ``LeaseLost`` if the current fence no longer holds."""
    if _fence.get() is not None:
        async with fenced_transaction(db):
            pass
