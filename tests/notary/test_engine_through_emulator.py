"""The real upload engine, driven by a submission's temporary credentials, through the emulator."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import os
from pathlib import Path

import pytest

from service.emulator.faultplan import FaultPlan, Operation
from service.emulator.faultproxy import FaultProxy
from service.emulator.notary import NotaryEmulator
from service.emulator.s3front import PUT_OBJECT_ONLY
from tests.support.clocks import ShiftedClock
from tests.support.notary import verdict
from uploader.config import EngineConfig, MiB
from uploader.database import Database
from uploader.engine import MultipartUploader
from uploader.errors import CredentialsExpiredError
from uploader.events import Event, PartAcknowledged
from uploader.notary.client import NotaryClient


def _file(path: Path, size: int) -> tuple[Path, str]:
    data = os.urandom(size)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def _config(emulator: NotaryEmulator) -> EngineConfig:
    return EngineConfig(
        part_size=5 * MiB,
        concurrency=4,
        stall_timeout_seconds=10,
        endpoint_url=emulator.s3_endpoint_url,
        region="us-west-2",
    )


async def test_engine_uploads_with_submission_credentials_and_emulator_accepts(
    emulator: NotaryEmulator, client: NotaryClient, tmp_path: Path
) -> None:
    path, digest = await asyncio.to_thread(_file, tmp_path / "App.zip", 12 * MiB + 77)
    submission = await client.submit("App.zip", digest)
    db = await Database.open(tmp_path / "state.db")
    try:
        result = await MultipartUploader(db, _config(emulator)).upload(
            path, submission.bucket, submission.object, submission.credentials
        )
    finally:
        await db.close()
    assert (result.part_count, result.checksum_algorithm) == (3, "CRC64NVME") and result.checksum
    assert await verdict(client, submission.id) == "Accepted"
    assert emulator.submissions[submission.id].uploaded_sha256 == digest


async def test_engine_reports_expired_credentials(
    emulator: NotaryEmulator, client: NotaryClient, tmp_path: Path, emulator_clock: ShiftedClock
) -> None:
    path, digest = await asyncio.to_thread(_file, tmp_path / "App.zip", 6 * MiB)
    submission = await client.submit("App.zip", digest)
    emulator_clock.advance(12 * 3600 + 1)
    db = await Database.open(tmp_path / "state.db")
    try:
        with pytest.raises(CredentialsExpiredError):
            await MultipartUploader(db, _config(emulator)).upload(
                path, submission.bucket, submission.object, submission.credentials
            )
    finally:
        await db.close()
    assert emulator.submissions[submission.id].landed_at is None


async def test_resume_under_put_object_only_credentials_uses_our_own_acknowledgements(
    emulator: NotaryEmulator, client: NotaryClient, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    emulator.s3.denied_operations = PUT_OBJECT_ONLY
    path, digest = await asyncio.to_thread(_file, tmp_path / "App.zip", 40 * MiB + 5)
    submission = await client.submit("App.zip", digest)
    db = await Database.open(tmp_path / "state.db")
    acknowledged = asyncio.Event()
    count = 0

    def stop_after_three(event: Event) -> None:
        nonlocal count
        if isinstance(event, PartAcknowledged):
            count += 1
            if count >= 3:
                acknowledged.set()

    try:
        first = asyncio.create_task(MultipartUploader(db, _config(emulator), hooks=[stop_after_three])
                                    .upload(path, submission.bucket, submission.object,
                                            submission.credentials))
        await acknowledged.wait()
        first.cancel()  # an interrupted run: no abort, the next run resumes
        with contextlib.suppress(asyncio.CancelledError):
            await first
        with caplog.at_level(logging.INFO, logger="uploader.engine"):
            result = await MultipartUploader(db, _config(emulator)).upload(
                path, submission.bucket, submission.object, submission.credentials)
    finally:
        await db.close()
    assert result.resumed and result.confirmed
    assert result.bytes_sent <= 40 * MiB + 5 - 3 * 5 * MiB  # acknowledged parts are not re-sent
    skipped = [r for r in caplog.records if "resuming from our own acknowledgements" in r.message]
    assert len(skipped) == 1
    assert emulator.s3.requests[("ListParts", 403)] == 1
    assert not any(op == "AbortMultipartUpload" for op, _ in emulator.s3.requests)
    assert await verdict(client, submission.id) == "Accepted"
    assert emulator.submissions[submission.id].uploaded_sha256 == digest


async def test_lost_complete_answer_under_put_object_only_credentials_ends_accepted(
    emulator: NotaryEmulator, client: NotaryClient, tmp_path: Path
) -> None:
    emulator.s3.denied_operations = PUT_OBJECT_ONLY
    path, digest = await asyncio.to_thread(_file, tmp_path / "App.zip", 7 * MiB)
    submission = await client.submit("App.zip", digest)
    plan = FaultPlan(lost_response=1.0, operations=frozenset({Operation.COMPLETE_MULTIPART_UPLOAD}))
    async with FaultProxy(emulator.s3_endpoint_url, plan) as proxy:

        async def heal_after_the_first_loss() -> None:
            while not proxy.stats.outcomes.get("lost_response"):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            proxy.set_plan(FaultPlan())

        healer = asyncio.create_task(heal_after_the_first_loss())
        db = await Database.open(tmp_path / "state.db")
        try:
            config = dataclasses.replace(_config(emulator), endpoint_url=proxy.url)
            result = await MultipartUploader(db, config).upload(
                path, submission.bucket, submission.object, submission.credentials)
        finally:
            await db.close()
        await healer
    # SeaweedFS answers a repeated Complete again (S3 may say NoSuchUpload instead: that path,
    # with HeadObject denied, is covered on the in-memory fake).
    assert result.part_count == 2
    assert await verdict(client, submission.id) == "Accepted"
