"""Fencing (``uploader.fence``) on both stores: a fenced run whose hold moved on writes nothing
more (the check is inside each write's transaction) and makes no further S3 call."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from pathlib import Path

import pytest

from tests.support.clocks import ManualClock
from tests.support.files import make_file
from tests.support.waiting import until_async
from uploader.config import EngineConfig, UploadLimits
from uploader.credentials import Credentials
from uploader.database import Database, Transaction
from uploader.engine import MultipartUploader
from uploader.errors import LeaseLost
from uploader.fence import fenced_by
from uploader.hashing import ChecksumAlgorithm, FileDigest
from uploader.lifecycle import SubmissionState, UploadState
from uploader.notary.store import SubmissionStore
from uploader.notary.wire import NewSubmission
from uploader.s3fake import InMemoryS3
from uploader.source_file import FileIdentity, SharedIdentity
from uploader.upload_state import UploadStore

PART = 64 * 1024
CREDS = Credentials("AKIA", "secret", None, None)


class Generation:
    """A fence on a one-row table: the run holds generation ``mine``; a takeover moves it."""

    def __init__(self, db: Database, mine: int = 1) -> None:
        self.db, self.mine, self.checks = db, mine, 0

    async def setup(self) -> Generation:
        await self.db.execute("CREATE TABLE IF NOT EXISTS test_hold (generation INTEGER NOT NULL)")
        await self.db.execute("INSERT INTO test_hold (generation) VALUES (?)", (self.mine,))
        return self

    async def take_over(self) -> None:
        await self.db.execute("UPDATE test_hold SET generation = generation + 1")

    async def check(self, tx: Transaction) -> None:
        self.checks += 1
        row = await tx.fetchone("SELECT generation FROM test_hold")
        if row is None or int(row["generation"]) != self.mine:
            raise LeaseLost(f"generation {self.mine} of the run was taken over")

    async def recorded_identity(self) -> SharedIdentity | None:
        return None

    async def record_identity(self, identity: SharedIdentity) -> None:
        pass


async def test_a_fenced_upload_store_writes_nothing_once_the_generation_moved(db: Database, tmp_path: Path) -> None:
    fence = await Generation(db).setup()
    store = UploadStore(db)
    path = make_file(tmp_path / "a.zip", 4 * PART)
    identity = FileIdentity.of(path)
    with fenced_by(fence):
        record = await store.create(identity, PART, ChecksumAlgorithm.CRC32, "b", "k", "")
        await store.mark_part_done(record.id, 1, '"etag1"')
        assert fence.checks == 2
        await fence.take_over()
        with pytest.raises(LeaseLost, match="taken over"):
            await store.mark_part_done(record.id, 2, '"etag2"')
        with pytest.raises(LeaseLost):  # two statements in one transaction: neither happens
            await store.forget_parts(record.id)
        with pytest.raises(LeaseLost):
            await store.set_s3_upload_id(record.id, "u-1")
        with pytest.raises(LeaseLost):  # an upload row and its parts: nothing of it is written
            await store.create(identity, PART, ChecksumAlgorithm.CRC32, "b", "other", "")
        with pytest.raises(LeaseLost):
            await store.check_fence()
    assert [p.done for p in await store.parts(record.id)] == [True, False, False, False]
    assert (await store.get(record.id)).s3_upload_id is None
    assert await store.find(path, "b", "other", "") is None
    await store.mark_part_done(record.id, 2, '"etag2"')  # outside the fenced run: unchecked
    assert fence.checks == 7


async def test_a_fenced_submission_store_writes_nothing_once_the_generation_moved(db: Database) -> None:
    fence = await Generation(db).setup()
    store = SubmissionStore(db)
    with fenced_by(fence):
        intent = await store.record_intent("App.zip", "ab" * 32, "/b/App.zip")
        record = await store.save_submission(
            NewSubmission("s-1", "bucket", "prod/s-1", Credentials("ASIA", "secret", "t", 2e9)),
            name="App.zip", sha256="ab" * 32, path="/b/App.zip", issued_at=1e9, intent_id=intent)
        await fence.take_over()
        with pytest.raises(LeaseLost):
            await store.mark_uploading(record.id)
        with pytest.raises(LeaseLost):
            await store.set_notary_status(record.id, "In Progress")
        with pytest.raises(LeaseLost):
            await store.record_intent("Other.zip", "cd" * 32, "/b/Other.zip")
    after = await store.get(record.id)
    assert after is not None and after.state is SubmissionState.CREATED and after.notary_status is None
    assert [i.name for i in await store.dangling_intents()] == []


async def test_a_fenced_engine_makes_no_s3_call_after_the_generation_moved(db: Database, tmp_path: Path) -> None:
    """Parts caught mid-body when the hold moves: they reach S3, but none is recorded done, no
    other part is sent, nothing is completed or aborted; the upload stays for the successor."""
    fence = await Generation(db).setup()
    fake, clock = InMemoryS3(), ManualClock()
    config = EngineConfig(part_size=PART, concurrency=2, stall_timeout_seconds=5,
                          limits=UploadLimits(min_part_size=1))
    engine = MultipartUploader(db, config, sleep=clock.sleep, monotonic=clock, s3=fake.open,
                               uniform=random.Random(3).uniform)
    path = make_file(tmp_path / "a.zip", 8 * PART)
    fake.hold_parts(PART // 2)
    with fenced_by(fence):
        upload = asyncio.create_task(engine.upload(path, "bucket", "a.zip", CREDS))

    async def in_flight() -> bool:
        await asyncio.sleep(0)
        return fake.calls["UploadPart"] == 2

    await until_async(in_flight, within=30, what="two parts in flight")
    await fence.take_over()
    calls = dict(fake.calls)
    fake.release_parts()
    with pytest.raises(LeaseLost):
        await upload
    assert dict(fake.calls) == calls  # no S3 call after the takeover
    assert calls == {"CreateMultipartUpload": 1, "UploadPart": 2}
    assert fake.open_uploads == 1  # not aborted: it is the successor's now
    store = UploadStore(db)
    record = await store.find(path.absolute(), "bucket", "a.zip", "")
    assert record is not None and record.state is UploadState.UPLOADING
    assert not any(p.done for p in await store.parts(record.id))

    # The successor (the next generation) resumes the same multipart upload and completes it.
    successor = Generation(db, mine=2)
    with fenced_by(successor):
        result = await engine.upload(path, "bucket", "a.zip", CREDS)
    assert result.resumed and fake.calls["CreateMultipartUpload"] == 1
    assert fake.calls["CompleteMultipartUpload"] == 1 and fake.open_uploads == 0


async def test_a_stored_hash_is_trusted_across_hosts_only_for_the_recorded_size_and_mtime(
    db: Database, tmp_path: Path
) -> None:
    """Another host sees another inode and ctime: the strict match misses, the recorded
    ``SharedIdentity`` finds the hash; a file whose size or mtime differ is hashed again."""
    store = UploadStore(db)
    path = make_file(tmp_path / "a.zip", 4 * PART)
    here = FileIdentity.of(path)
    digest = FileDigest(here, "ab" * 32, PART, ChecksumAlgorithm.CRC32, ("c1", "c2", "c3", "c4"), "")
    await store.create(here, PART, ChecksumAlgorithm.CRC32, "b", "k", "", digest)
    there = dataclasses.replace(here, inode=here.inode + 1, ctime_ns=here.ctime_ns + 1)
    assert await store.find_digest(there, PART) is None
    shared = SharedIdentity(here.size, here.mtime_ns, "ab" * 32)
    found = await store.find_digest(there, PART, shared)
    assert found is not None and found.sha256 == "ab" * 32 and found.identity == there
    assert found.part_checksums == ("c1", "c2", "c3", "c4")
    touched = dataclasses.replace(there, mtime_ns=here.mtime_ns + 1)
    assert await store.find_digest(touched, PART, shared) is None  # changed: hash it again
    assert await store.find_digest(there, PART, SharedIdentity(here.size, here.mtime_ns, "cd" * 32)) is None
