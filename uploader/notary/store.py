"""Persistent record of notary submissions, so a crash never creates a duplicate submission.

Protocol the pipeline follows (tables ``submission_intents`` and ``submissions``, migration 1):

1. ``record_intent`` *before* ``POST /submissions``;
2. ``save_submission`` as soon as the answer arrives: inserts the submission (with its temporary
   credentials) and attaches its id to the intent, in one transaction, before any byte is
   uploaded;
3. ``mark_uploading`` / ``mark_uploaded`` / ``set_notary_status`` / ``mark_done`` as it goes;
   ``mark_abandoned`` when a submission is given up (credentials expired mid-upload...).

The submission's temporary S3 credentials are stored here only (the upload engine is handed
them on every run): resuming an upload, after a crash or from the daemon, and aborting one on
cancel both read them from the ``SubmissionRecord``.

An intent without a submission id (``dangling_intents``) means the process died between sending
the POST and recording its answer: the pipeline looks for the submission in the service's
history (same name, created after ``started_at``) and then ``attach_intent``s or
``discard_intent``s it.

States move only as ``SUBMISSION_LIFECYCLE`` allows (``created`` → ``uploading`` → ``uploaded``
→ ``done``; any but ``done`` → ``abandoned``), checked against the row in the same transaction as
the move. Times are Unix seconds from the injected clock. Safe to use from many tasks.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from uploader.constants import CREDENTIAL_LIFETIME_SECONDS
from uploader.credentials import Credentials
from uploader.database import Database
from uploader.fence import fenced_execute, fenced_transaction
from uploader.lifecycle import SUBMISSION_LIFECYCLE, NotaryStatus, SubmissionState
from uploader.notary.wire import NewSubmission

ACTIVE_STATES = tuple(s for s in SubmissionState if s not in SUBMISSION_LIFECYCLE.terminal)


@dataclass(frozen=True)
class Intent:
    id: int
    name: str
    sha256: str
    path: str
    started_at: float
    submission_id: str | None


@dataclass(frozen=True)
class SubmissionRecord:
    id: str
    name: str
    sha256: str
    path: str
    bucket: str
    object: str
    credentials: Credentials
    credentials_issued_at: float
    state: SubmissionState
    notary_status: str | None
    abandoned_reason: str | None
    log_path: str | None
    webhook: str | None
    created_at: float
    updated_at: float
    code_identity: str | None  # the ticket record name of the code signature it was made for

    @property
    def credentials_expire_at(self) -> float:
        assert self.credentials.expires_at is not None
        return self.credentials.expires_at


@dataclass(frozen=True)
class EarlierVerdict:
    """A verdict reached on an archive by another run (``SubmissionStore.decided_since``)."""

    submission_id: str
    log_path: Path | None


class SubmissionStore:
    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    # -- intents ---------------------------------------------------------------------------

    async def record_intent(self, name: str, sha256: str, path: str) -> int:
        """Write down that a POST is about to be sent; returns the intent id."""
        return await fenced_execute(
            self._db, "INSERT INTO submission_intents (name, sha256, path, started_at) VALUES (?, ?, ?, ?)",
            (name, sha256, path, self._clock()),
        )

    async def attach_intent(self, intent_id: int, submission_id: str) -> None:
        await fenced_execute(
            self._db, "UPDATE submission_intents SET submission_id = ? WHERE id = ?",
            (submission_id, intent_id),
        )

    async def discard_intent(self, intent_id: int) -> None:
        """Forget an intent whose POST is known not to have created anything."""
        await fenced_execute(self._db, "DELETE FROM submission_intents WHERE id = ?", (intent_id,))

    async def dangling_intents(self, sha256: str | None = None) -> list[Intent]:
        """Intents whose POST may have been sent but whose answer was never recorded."""
        sql = "SELECT * FROM submission_intents WHERE submission_id IS NULL"
        params: tuple[str, ...] = ()
        if sha256 is not None:
            sql += " AND sha256 = ?"
            params = (sha256,)
        rows = await self._db.fetchall(sql + " ORDER BY started_at", params)
        return [_intent(row) for row in rows]

    # -- submissions -----------------------------------------------------------------------

    async def save_submission(
        self,
        submission: NewSubmission,
        *,
        name: str,
        sha256: str,
        path: str,
        issued_at: float,
        webhook: str | None = None,
        intent_id: int | None = None,
    ) -> SubmissionRecord:
        """Persist a new submission (and resolve its intent) atomically; returns the record."""
        creds = submission.credentials
        expires_at = creds.expires_at if creds.expires_at is not None else issued_at + CREDENTIAL_LIFETIME_SECONDS
        now = self._clock()
        async with fenced_transaction(self._db) as tx:
            await tx.execute(
                """INSERT INTO submissions (id, name, sha256, path, bucket, object,
                       access_key_id, secret_access_key, session_token,
                       credentials_issued_at, credentials_expire_at, state, webhook,
                       created_at, updated_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    submission.id,
                    name,
                    sha256,
                    path,
                    submission.bucket,
                    submission.object,
                    creds.access_key_id,
                    creds.secret_access_key,
                    creds.session_token or "",
                    issued_at,
                    expires_at,
                    SubmissionState.CREATED.value,
                    webhook,
                    now,
                    now,
                ),
            )
            if intent_id is not None:
                await tx.execute(
                    "UPDATE submission_intents SET submission_id = ? WHERE id = ?",
                    (submission.id, intent_id),
                )
        record = await self.get(submission.id)
        assert record is not None
        return record

    async def get(self, submission_id: str) -> SubmissionRecord | None:
        row = await self._db.fetchone(
            "SELECT * FROM submissions WHERE id = ?", (submission_id.lower(),)
        )
        if row is None:
            row = await self._db.fetchone(
                "SELECT * FROM submissions WHERE id = ?", (submission_id,)
            )
        return _record(row) if row else None

    async def find_active(self, sha256: str, path: str) -> SubmissionRecord | None:
        """The newest submission for this file that is neither done nor abandoned."""
        row = await self._db.fetchone(
            f"""SELECT * FROM submissions
               WHERE sha256 = ? AND path = ? AND state IN ({",".join("?" * len(ACTIVE_STATES))})
               ORDER BY created_at DESC, rowid DESC LIMIT 1""",
            (sha256, path, *(state.value for state in ACTIVE_STATES)),
        )
        return _record(row) if row else None

    async def find_latest(self, sha256: str, path: str) -> SubmissionRecord | None:
        """The newest submission for this file in any state (to report a finished one)."""
        row = await self._db.fetchone(
            """SELECT * FROM submissions WHERE sha256 = ? AND path = ?
               ORDER BY created_at DESC, rowid DESC LIMIT 1""",
            (sha256, path),
        )
        return _record(row) if row else None

    async def newest_accepted(
        self, *, sha256: str | None = None, code_identity: str | None = None
    ) -> SubmissionRecord | None:
        """The newest submission recorded as Accepted for these bytes or this code signature.

        Only a lead: a row can be stale or forged, so the caller confirms it with the service.
        """
        column, value = ("sha256", sha256) if sha256 is not None else ("code_identity", code_identity)
        if value is None:
            return None
        row = await self._db.fetchone(
            f"SELECT * FROM submissions WHERE {column} = ? AND notary_status = ?"
            " ORDER BY updated_at DESC, rowid DESC LIMIT 1", (value, NotaryStatus.ACCEPTED))
        return _record(row) if row else None

    async def decided_since(self, sha256: str, since: float) -> EarlierVerdict | None:
        """The verdict another run reached on the same archive while this one waited for it."""
        row = await self._db.fetchone(
            "SELECT id, log_path FROM submissions WHERE sha256 = ? AND state = ?"
            " AND updated_at >= ? ORDER BY updated_at DESC LIMIT 1",
            (sha256, SubmissionState.DONE.value, since))
        if row is None:
            return None
        return EarlierVerdict(str(row["id"]), Path(row["log_path"]) if row["log_path"] else None)

    async def set_code_identity(self, submission_id: str, code_identity: str) -> None:
        """Record which code signature the Accepted bytes carry (``artifact.code_identity``)."""
        await self._update(submission_id, "code_identity = ?", (code_identity,))

    async def list_submissions(self, *, include_finished: bool = True) -> list[SubmissionRecord]:
        sql = "SELECT * FROM submissions"
        params: tuple[str, ...] = ()
        if not include_finished:
            sql += f" WHERE state IN ({','.join('?' * len(ACTIVE_STATES))})"
            params = tuple(state.value for state in ACTIVE_STATES)
        rows = await self._db.fetchall(sql + " ORDER BY created_at DESC, rowid DESC", params)
        return [_record(row) for row in rows]

    async def log_path(self, submission_id: str) -> Path | None:
        """Where the notary log of ``submission_id`` was saved; None if not (yet) or unknown."""
        record = await self.get(submission_id)
        return Path(record.log_path) if record is not None and record.log_path else None

    async def mark_uploading(self, submission_id: str) -> None:
        await self._move(submission_id, SubmissionState.UPLOADING)

    async def mark_uploaded(self, submission_id: str) -> None:
        await self._move(submission_id, SubmissionState.UPLOADED)

    async def set_notary_status(self, submission_id: str, notary_status: str | None) -> None:
        """Apple's status of the submission; None: the service does not know it (a stale or
        forged row, never to be taken for a verdict again)."""
        await self._update(submission_id, "notary_status = ?", (notary_status,))

    async def mark_done(
        self, submission_id: str, notary_status: str, log_path: str | None = None
    ) -> None:
        await self._move(submission_id, SubmissionState.DONE,
                         "notary_status = ?, log_path = COALESCE(?, log_path)",
                         (notary_status, log_path))

    async def mark_abandoned(self, submission_id: str, reason: str) -> None:
        await self._move(submission_id, SubmissionState.ABANDONED, "abandoned_reason = ?",
                         (reason,))

    async def _move(
        self,
        submission_id: str,
        state: SubmissionState,
        assignments: str = "",
        params: tuple[object, ...] = (),
    ) -> None:
        """Set ``state`` (and ``assignments``) if ``SUBMISSION_LIFECYCLE`` allows the move from
        the row's current state; ``IllegalTransition`` if not, ``KeyError`` if no such row."""
        async with fenced_transaction(self._db) as tx:
            row = await tx.fetchone(  # the lower-case id first, as ``get`` finds it
                "SELECT id, state FROM submissions WHERE id IN (?, ?) ORDER BY id = ? DESC",
                (submission_id.lower(), submission_id, submission_id.lower()))
            if row is None:
                raise KeyError(f"no submission {submission_id} in the state database")
            SUBMISSION_LIFECYCLE.check(SubmissionState(row["state"]), state,
                                       what=str(row["id"]))
            columns = ", ".join(["state = ?", *filter(None, [assignments]), "updated_at = ?"])
            await tx.execute(f"UPDATE submissions SET {columns} WHERE id = ?",
                             (state.value, *params, self._clock(), row["id"]))

    async def _update(
        self, submission_id: str, assignments: str, params: tuple[object, ...]
    ) -> None:
        changed = await fenced_execute(
            self._db, f"UPDATE submissions SET {assignments}, updated_at = ? WHERE id = ?",
            (*params, self._clock(), submission_id),
        )
        if changed == 0:
            raise KeyError(f"no submission {submission_id} in the state database")


def _intent(row: sqlite3.Row) -> Intent:
    return Intent(
        id=int(row["id"]),
        name=row["name"],
        sha256=row["sha256"],
        path=row["path"],
        started_at=float(row["started_at"]),
        submission_id=row["submission_id"],
    )


def _record(row: sqlite3.Row) -> SubmissionRecord:
    return SubmissionRecord(
        id=row["id"],
        name=row["name"],
        sha256=row["sha256"],
        path=row["path"],
        bucket=row["bucket"],
        object=row["object"],
        credentials=Credentials(
            access_key_id=row["access_key_id"],
            secret_access_key=row["secret_access_key"],
            session_token=row["session_token"] or None,
            expires_at=float(row["credentials_expire_at"]),
        ),
        credentials_issued_at=float(row["credentials_issued_at"]),
        state=SubmissionState(row["state"]),
        notary_status=row["notary_status"],
        abandoned_reason=row["abandoned_reason"],
        log_path=row["log_path"],
        webhook=row["webhook"],
        created_at=float(row["created_at"]),
        updated_at=float(row["updated_at"]),
        code_identity=row["code_identity"],
    )
