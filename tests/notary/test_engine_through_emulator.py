"""The real upload engine, driven by a submission's temporary credentials, through the emulator."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path

import pytest

from service.emulator.notary import NotaryEmulator
from uploader.config import EngineConfig, MiB
from uploader.database import Database
from uploader.engine import MultipartUploader
from uploader.errors import CredentialsExpiredError
from uploader.notary.client import NotaryClient

from .conftest import FakeClock


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
    deadline = time.monotonic() + 10
    while (status := await client.status(submission.id)).status == "In Progress":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert status.status == "Accepted"
    assert emulator.submissions[submission.id].uploaded_sha256 == digest


async def test_engine_reports_expired_credentials(
    emulator: NotaryEmulator, client: NotaryClient, tmp_path: Path, emulator_clock: FakeClock
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
