"""Resume state of multipart uploads: the ``uploads`` and ``parts`` tables.

Invariant: a part is ``done`` only after S3 acknowledged it (returned its ETag) *and* that
acknowledgement was committed here. After a crash, every part not ``done`` is either re-sent or
recognised through ListParts; a ``done`` part is never sent again.

Every write to an upload's row returns the row as written (``RETURNING``), so the engine never
reads back what it just wrote. An upload's state moves only as ``UPLOAD_LIFECYCLE`` allows (checked against the row, in the
same transaction as the move). Credentials are not stored here: the caller hands them to the
engine on every run (a notarisation's live with its submission, ``notary.store``).
"""

from __future__ import annotations

import enum
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from uploader.database import Database, Transaction
from uploader.fence import check_fence, fenced_execute, fenced_transaction
from uploader.hashing import ChecksumAlgorithm, FileDigest
from uploader.lifecycle import UPLOAD_LIFECYCLE, UploadState
from uploader.planning import Part, UploadPlan
from uploader.source_file import FileIdentity, SharedIdentity

ACTIVE_STATES = (UploadState.PLANNED, UploadState.UPLOADING, UploadState.COMPLETING)


class PartState(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"  # S3 acknowledged it and the ETag is committed


@dataclass(frozen=True)
class UploadRecord:
    id: int
    identity: FileIdentity
    sha256: str | None
    bucket: str
    key: str
    endpoint: str
    part_size: int
    algorithm: ChecksumAlgorithm  # in use
    requested_algorithm: ChecksumAlgorithm  # what the settings asked for (differs after a fallback)
    full_checksum: str | None
    s3_upload_id: str | None
    state: UploadState

    @property
    def plan(self) -> UploadPlan:
        return UploadPlan(self.identity.size, self.part_size)

    @property
    def target(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class PartRecord:
    number: int
    offset: int
    length: int
    checksum: str
    etag: str | None
    done: bool
    attempts: int

    @property
    def part(self) -> Part:
        return Part(self.number, self.offset, self.length)


def _upload(row: sqlite3.Row) -> UploadRecord:
    return UploadRecord(
        id=row["id"],
        identity=FileIdentity(Path(row["path"]), row["size"], row["mtime_ns"], row["inode"],
                              int(row["ctime_ns"] or 0)),
        sha256=row["sha256"],
        bucket=row["bucket"],
        key=row["key"],
        endpoint=row["endpoint"],
        part_size=row["part_size"],
        algorithm=ChecksumAlgorithm(row["checksum_algorithm"]),
        requested_algorithm=ChecksumAlgorithm(row["checksum_requested"] or row["checksum_algorithm"]),
        full_checksum=row["full_checksum"],
        s3_upload_id=row["s3_upload_id"],
        state=UploadState(row["state"]),
    )


class UploadStore:
    """Every write goes through ``uploader.fence``: inside a fenced run, a write whose fence no
    longer holds raises ``LeaseLost`` and writes nothing."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def check_fence(self) -> None:
        """Before an S3 call: ``LeaseLost`` if the run's fence no longer holds."""
        await check_fence(self._db)

    async def find(self, path: Path, bucket: str, key: str, endpoint: str) -> UploadRecord | None:
        """The newest upload of this file to this target, finished or not."""
        row = await self._db.fetchone(
            "SELECT * FROM uploads WHERE path = ? AND bucket = ? AND key = ? AND endpoint = ?"
            " ORDER BY id DESC LIMIT 1",
            (str(path), bucket, key, endpoint),
        )
        return _upload(row) if row else None

    async def get(self, upload_id: int) -> UploadRecord:
        return _found(await self._db.fetchone(_SELECT, (upload_id,)), upload_id)

    async def create(
        self,
        identity: FileIdentity,
        part_size: int,
        algorithm: ChecksumAlgorithm,
        bucket: str,
        key: str,
        endpoint: str,
        digest: FileDigest | None = None,
    ) -> UploadRecord:
        """Record a planned upload. Without a digest, part checksums are '' until each part's
        first read (``set_part_checksum``), which happens before that part is first sent."""
        now = time.time()
        plan = UploadPlan(identity.size, part_size)
        checksums = digest.part_checksums if digest else ("",) * plan.part_count
        async with fenced_transaction(self._db) as tx:
            row = await tx.fetchone(
                "INSERT INTO uploads (path, size, mtime_ns, inode, ctime_ns, sha256, bucket, key,"
                " endpoint, part_size, checksum_algorithm, full_checksum, state, created_at,"
                " updated_at, checksum_requested)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
                (
                    str(identity.path), identity.size, identity.mtime_ns, identity.inode,
                    identity.ctime_ns,
                    digest.sha256 if digest else None, bucket, key, endpoint, part_size,
                    algorithm.value, digest.full_checksum if digest else None,
                    UploadState.PLANNED.value, now, now, algorithm.value,
                ),
            )
            assert row is not None  # an INSERT returns its row
            record = _upload(row)
            await tx.executemany(
                "INSERT INTO parts (upload_id, number, offset, length, checksum) VALUES (?, ?, ?, ?, ?)",
                ((record.id, p.number, p.offset, p.length, checksums[p.number - 1])
                 for p in plan.parts()),
            )
        return record

    async def adopt_file(self, upload_id: int, identity: FileIdentity) -> UploadRecord:
        """Continue the upload from another file proven to hold the same bytes (same SHA-256)."""
        async with fenced_transaction(self._db) as tx:
            return await _update(tx, upload_id, "size = ?, mtime_ns = ?, inode = ?, ctime_ns = ?",
                                 (identity.size, identity.mtime_ns, identity.inode,
                                  identity.ctime_ns))

    async def set_part_checksum(self, upload_id: int, number: int, checksum: str) -> None:
        await fenced_execute(
            self._db, "UPDATE parts SET checksum = ? WHERE upload_id = ? AND number = ? AND checksum = ''",
            (checksum, upload_id, number),
        )

    async def change_algorithm(self, upload_id: int, algorithm: ChecksumAlgorithm) -> UploadRecord:
        """Switch a not yet created upload to another checksum; part checksums are recomputed
        on each part's first read. Returns the upload as it now is."""
        async with fenced_transaction(self._db) as tx:
            row = await tx.fetchone(
                "UPDATE uploads SET checksum_algorithm = ?, full_checksum = NULL, updated_at = ?"
                " WHERE id = ? AND s3_upload_id IS NULL RETURNING *",
                (algorithm.value, time.time(), upload_id),
            )
            if row is None:  # already created: nothing changes
                return _found(await tx.fetchone(_SELECT, (upload_id,)), upload_id)
            await tx.execute("UPDATE parts SET checksum = '' WHERE upload_id = ?", (upload_id,))
        return _upload(row)

    async def set_full_checksum(self, upload_id: int, checksum: str) -> UploadRecord:
        async with fenced_transaction(self._db) as tx:
            return await _update(tx, upload_id, "full_checksum = ?", (checksum,), touch=False)

    async def parts(self, upload_id: int) -> list[PartRecord]:
        rows = await self._db.fetchall(
            "SELECT * FROM parts WHERE upload_id = ? ORDER BY number", (upload_id,)
        )
        return [
            PartRecord(r["number"], r["offset"], r["length"], r["checksum"], r["etag"],
                       r["state"] == PartState.DONE, r["attempts"])
            for r in rows
        ]

    async def set_s3_upload_id(self, upload_id: int, s3_upload_id: str | None) -> UploadRecord:
        async with fenced_transaction(self._db) as tx:
            return await _update(tx, upload_id, "s3_upload_id = ?", (s3_upload_id,))

    async def set_state(
        self, upload_id: int, state: UploadState, error: str | None = None
    ) -> UploadRecord:
        """Move the upload to ``state``; ``IllegalTransition`` if its lifecycle forbids that."""
        completed = time.time() if state is UploadState.COMPLETED else None
        async with fenced_transaction(self._db) as tx:
            await _check_move(tx, upload_id, state)
            return await _update(tx, upload_id,
                                 "state = ?, error = ?, completed_at = COALESCE(?, completed_at)",
                                 (state.value, error, completed))

    async def start_attempt(self, upload_id: int, number: int) -> tuple[int, int]:
        """Count an attempt before sending; returns the attempt number (1 = first ever) and
        how many of the part's bytes earlier attempts sent, as far as recorded."""
        async with fenced_transaction(self._db) as tx:
            await tx.execute(
                "UPDATE parts SET attempts = attempts + 1 WHERE upload_id = ? AND number = ?",
                (upload_id, number),
            )
            row = await tx.fetchone(
                "SELECT attempts, sent_bytes FROM parts WHERE upload_id = ? AND number = ?",
                (upload_id, number),
            )
        return (int(row["attempts"]), int(row["sent_bytes"])) if row else (1, 0)

    async def record_sent(self, upload_id: int, number: int, nbytes: int) -> None:
        """At least ``nbytes`` of the part have been handed to the network by some attempt."""
        await fenced_execute(
            self._db, "UPDATE parts SET sent_bytes = MAX(sent_bytes, ?) WHERE upload_id = ? AND number = ?",
            (nbytes, upload_id, number),
        )

    async def mark_part_done(self, upload_id: int, number: int, etag: str) -> None:
        """S3 acknowledged the part: from now on it is never sent again (the one write that
        makes a part done; ``mark_parts_done`` adopts parts a ListParts found)."""
        await fenced_execute(
            self._db, "UPDATE parts SET state = ?, etag = ? WHERE upload_id = ? AND number = ?",
            (PartState.DONE.value, etag, upload_id, number),
        )

    async def mark_parts_done(self, upload_id: int, etags: dict[int, str]) -> None:
        async with fenced_transaction(self._db) as tx:
            await tx.executemany(
                "UPDATE parts SET state = ?, etag = ? WHERE upload_id = ? AND number = ?",
                ((PartState.DONE.value, etag, upload_id, number)
                 for number, etag in etags.items()),
            )

    async def forget_parts(self, upload_id: int) -> UploadRecord:
        """The multipart upload is gone (NoSuchUpload): every part must be sent again."""
        async with fenced_transaction(self._db) as tx:
            await _check_move(tx, upload_id, UploadState.PLANNED)
            await tx.execute(
                "UPDATE parts SET state = ?, etag = NULL WHERE upload_id = ?",
                (PartState.PENDING.value, upload_id),
            )
            return await _update(tx, upload_id, "s3_upload_id = NULL, state = ?",
                                 (UploadState.PLANNED.value,))

    async def mark_parts_pending(self, upload_id: int, numbers: list[int]) -> None:
        async with fenced_transaction(self._db) as tx:
            await tx.executemany(
                "UPDATE parts SET state = ?, etag = NULL WHERE upload_id = ? AND number = ?",
                ((PartState.PENDING.value, upload_id, n) for n in numbers),
            )

    async def find_digest(self, identity: FileIdentity, part_size: int,
                          shared: SharedIdentity | None = None) -> FileDigest | None:
        """The hashing pass of an earlier upload of this very file (same size, mtime, inode
        and ctime: see ``FileIdentity``), or with ``shared`` (the SHA-256 a fenced run's
        earlier holder recorded for this size and mtime) of the file as another host saw it.

        Lets a resumed notarisation skip re-reading 20 GB: the SHA-256 and part checksums are
        stored before the first byte is sent.
        """
        params: tuple[object, ...]
        if shared is not None and shared.matches(identity):
            match, params = "sha256 = ?", (shared.sha256,)
        else:
            match, params = "inode = ? AND ctime_ns = ? AND sha256 IS NOT NULL", (
                identity.inode, identity.ctime_ns)
        row = await self._db.fetchone(
            f"SELECT * FROM uploads WHERE path = ? AND size = ? AND mtime_ns = ? AND {match}"
            " AND part_size = ? ORDER BY id DESC LIMIT 1",
            (str(identity.path), identity.size, identity.mtime_ns, *params, part_size),
        )
        if row is None:
            return None
        parts = await self.parts(int(row["id"]))
        return FileDigest(identity, str(row["sha256"]), part_size,
                          ChecksumAlgorithm(row["checksum_algorithm"]),
                          tuple(p.checksum for p in parts), str(row["full_checksum"] or ""))


async def _update(tx: Transaction, upload_id: int, assignments: str, params: tuple[object, ...],
                  *, touch: bool = True) -> UploadRecord:
    """``UPDATE uploads SET <assignments>`` (and ``updated_at`` unless ``touch`` is False) for
    one upload; returns the row as written."""
    stamp = ", updated_at = ?" if touch else ""
    row = await tx.fetchone(
        f"UPDATE uploads SET {assignments}{stamp} WHERE id = ? RETURNING *",
        (*params, *((time.time(),) if touch else ()), upload_id),
    )
    return _found(row, upload_id)


_SELECT = "SELECT * FROM uploads WHERE id = ?"


def _found(row: sqlite3.Row | None, upload_id: int) -> UploadRecord:
    if row is None:
        raise KeyError(upload_id)
    return _upload(row)


async def _check_move(tx: Transaction, upload_id: int, state: UploadState) -> None:
    row = await tx.fetchone("SELECT state FROM uploads WHERE id = ?", (upload_id,))
    if row is None:
        raise KeyError(upload_id)
    UPLOAD_LIFECYCLE.check(UploadState(row["state"]), state, what=f"#{upload_id}")
