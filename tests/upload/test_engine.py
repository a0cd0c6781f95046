"""The engine against a real S3-compatible server (SeaweedFS) with real files and SQLite."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from awscrt import checksums
from botocore.exceptions import ClientError

from service.emulator.seaweed import SeaweedServer
from tests.support.files import PART, make_file
from uploader.database import Database
from uploader.engine import MultipartUploader
from uploader.errors import CredentialsExpiredError, PermanentUploadError, SourceChangedError
from uploader.events import Event, PartAcknowledged, UploadStateChanged
from uploader.hashing import ChecksumAlgorithm
from uploader.lifecycle import UploadState

from .helpers import TINY_LIMITS, Recorder, config, credentials, s3, sha256_of_file, stored_sha256


async def test_uploads_the_exact_bytes(seaweed: SeaweedServer, bucket: str, db: Database,
                                       tmp_path: Path) -> None:
    source = make_file(tmp_path / "build.zip", 3 * PART + 12345)
    recorder = Recorder()
    engine = MultipartUploader(db, config(seaweed.endpoint_url), hooks=[recorder])
    result = await engine.upload(source, bucket, "builds/build.zip", credentials(seaweed))
    assert result.part_count == 4
    assert stored_sha256(seaweed, bucket, "builds/build.zip") == sha256_of_file(source)
    # The full-object CRC64NVME we computed from the file is the one S3 verified and stored.
    expected = ChecksumAlgorithm.CRC64NVME.to_wire(checksums.crc64nvme(source.read_bytes()))
    assert result.checksum_algorithm == "CRC64NVME" and result.checksum == expected
    head = s3(seaweed).head_object(Bucket=bucket, Key="builds/build.zip", ChecksumMode="ENABLED")
    assert head["ChecksumCRC64NVME"] == expected and head["ChecksumType"] == "FULL_OBJECT"
    assert recorder.sent == source.stat().st_size and recorder.resent == 0
    assert sorted(recorder.acknowledged) == [1, 2, 3, 4]
    # done is done: the same call again sends nothing
    again = await engine.upload(source, bucket, "builds/build.zip", credentials(seaweed))
    assert again.resumed and again.bytes_sent == 0


async def test_cancelled_upload_resumes_without_resending_acknowledged_parts(
    seaweed: SeaweedServer, bucket: str, db: Database, tmp_path: Path
) -> None:
    source = make_file(tmp_path / "build.zip", 8 * PART)
    engine_config = config(seaweed.endpoint_url, concurrency=2)
    acked: list[int] = []
    task: asyncio.Task[object] | None = None

    def cancel_after_three(event: Event) -> None:
        if isinstance(event, PartAcknowledged):
            acked.append(event.part_number)
            if len(acked) == 3 and task is not None:
                task.cancel()

    first = MultipartUploader(db, engine_config, hooks=[cancel_after_three])
    task = asyncio.create_task(first.upload(source, bucket, "k", credentials(seaweed)))
    with pytest.raises(asyncio.CancelledError):
        await task
    done_before = {r["number"] for r in await db.fetchall("SELECT number FROM parts WHERE state='done'")}
    assert len(done_before) >= 3

    recorder = Recorder()
    second = MultipartUploader(db, engine_config, hooks=[recorder])
    result = await second.upload(source, bucket, "k", credentials(seaweed))
    assert result.resumed
    assert not set(recorder.acknowledged) & done_before, "a committed part was sent again"
    assert recorder.sent <= (8 - len(done_before)) * PART
    assert stored_sha256(seaweed, bucket, "k") == sha256_of_file(source)


async def test_source_modified_mid_upload_is_never_completed(
    seaweed: SeaweedServer, bucket: str, db: Database, tmp_path: Path
) -> None:
    source = make_file(tmp_path / "build.zip", 6 * PART)

    def scribble_after_first_part(event: Event) -> None:
        if isinstance(event, PartAcknowledged) and event.part_number:
            with open(source, "r+b") as f:  # same size, same inode: only content changes
                f.seek(5 * PART + 10)
                f.write(b"tampered")

    engine = MultipartUploader(db, config(seaweed.endpoint_url, concurrency=1),
                               hooks=[scribble_after_first_part])
    with pytest.raises(SourceChangedError) as caught:
        await engine.upload(source, bucket, "k", credentials(seaweed))
    assert str(source) in str(caught.value)
    with pytest.raises(ClientError):
        s3(seaweed).head_object(Bucket=bucket, Key="k")
    assert s3(seaweed).list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    row = await db.fetchone("SELECT state FROM uploads")
    assert row is not None and row["state"] == UploadState.FAILED


async def test_source_changed_between_runs_needs_restart(
    seaweed: SeaweedServer, bucket: str, db: Database, tmp_path: Path
) -> None:
    source = make_file(tmp_path / "build.zip", 4 * PART)
    task: asyncio.Task[object] | None = None

    def stop_after_one(event: Event) -> None:
        if isinstance(event, PartAcknowledged) and task is not None:
            task.cancel()

    engine_config = config(seaweed.endpoint_url, concurrency=1)
    task = asyncio.create_task(
        MultipartUploader(db, engine_config, hooks=[stop_after_one]).upload(
            source, bucket, "k", credentials(seaweed)))
    with pytest.raises(asyncio.CancelledError):
        await task
    make_file(source, 4 * PART + 1)  # a new build at the same path
    engine = MultipartUploader(db, engine_config)
    with pytest.raises(SourceChangedError, match="--restart"):
        await engine.upload(source, bucket, "k", credentials(seaweed))
    result = await engine.upload(source, bucket, "k", credentials(seaweed), restart=True)
    assert not result.resumed
    assert stored_sha256(seaweed, bucket, "k") == sha256_of_file(source)


async def test_listparts_paging_past_1000_parts_adopts_unrecorded_parts(
    seaweed: SeaweedServer, bucket: str, db: Database, tmp_path: Path
) -> None:
    """A crash between S3's acknowledgement and our commit, for 1,100 parts at once.

    Tiny parts (SeaweedFS refuses to *complete* them, as S3 would, but stores and lists them)
    let the test cross ListParts' 1,000-part page cheaply.
    """
    source = make_file(tmp_path / "many.bin", 1100 * 1024)
    engine_config = config(seaweed.endpoint_url, part_size=1024, limits=TINY_LIMITS, concurrency=16)
    task: asyncio.Task[object] | None = None

    def stop_before_complete(event: Event) -> None:
        if isinstance(event, UploadStateChanged) and event.state is UploadState.COMPLETING:
            assert task is not None
            task.cancel()

    task = asyncio.create_task(MultipartUploader(db, engine_config, hooks=[stop_before_complete])
                               .upload(source, bucket, "k", credentials(seaweed)))
    with pytest.raises(asyncio.CancelledError):
        await task
    # Forget every acknowledgement, as if we had died before committing any of them.
    await db.execute("UPDATE parts SET state = 'pending', etag = NULL")

    recorder = Recorder()
    with pytest.raises(PermanentUploadError, match="EntityTooSmall"):
        await MultipartUploader(db, engine_config, hooks=[recorder]).upload(
            source, bucket, "k", credentials(seaweed))
    assert recorder.sent == 0, "parts listed on page 2 of ListParts were uploaded again"
    row = await db.fetchone("SELECT COUNT(*) AS n FROM parts WHERE state = 'done'")
    assert row is not None and row["n"] == 1100


async def test_expired_credentials_stop_before_sending(
    seaweed: SeaweedServer, bucket: str, db: Database, tmp_path: Path
) -> None:
    source = make_file(tmp_path / "a", PART)
    recorder = Recorder()
    engine = MultipartUploader(db, config(seaweed.endpoint_url), hooks=[recorder])
    with pytest.raises(CredentialsExpiredError):
        await engine.upload(source, bucket, "k", credentials(seaweed, expires_at=time.time() - 1))
    assert recorder.sent == 0


async def test_wrong_secret_is_a_permanent_error_with_advice(
    seaweed: SeaweedServer, bucket: str, db: Database, tmp_path: Path
) -> None:
    from uploader.credentials import Credentials

    source = make_file(tmp_path / "a", PART)
    engine = MultipartUploader(db, config(seaweed.endpoint_url))
    with pytest.raises(PermanentUploadError, match="AWS_SECRET_ACCESS_KEY"):
        await engine.upload(source, bucket, "k", Credentials(seaweed.access_key, "wrong"))
