"""NOTARYD_CHECKSUM applies to bundles: the zipper hashes the zip's parts in the chosen
algorithm, and S3 (SeaweedFS behind the emulator) takes them: it checks each part's checksum on
arrival, and the object it keeps carries the composite checksum of exactly those parts."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any

import boto3
import pytest
from awscrt import checksums

import uploader.bundle_zip
from service.emulator.notary import NotaryEmulator
from service.emulator.sample_app import make_sample_app
from service.emulator.seaweed import SeaweedServer
from tests.support.notary import notarize
from uploader.config import MiB
from uploader.database import Database
from uploader.hashing import ChecksumAlgorithm, RunningDigest, part_checksum_sync
from uploader.lifecycle import UploadState
from uploader.notary.pipeline import NotarizeRequest, NotaryConfig
from uploader.planning import plan_upload


def composite(algorithm: ChecksumAlgorithm, parts: list[str]) -> str:
    """S3's checksum of a multipart object: the checksum of the parts' checksums, ``-N``."""
    joined = b"".join(base64.b64decode(part) for part in parts)
    if algorithm is ChecksumAlgorithm.SHA256:
        raw = hashlib.sha256(joined).digest()
    else:
        raw = int(checksums.crc32c(joined)).to_bytes(4, "big")
    return f"{base64.b64encode(raw).decode('ascii')}-{len(parts)}"


@pytest.mark.parametrize("algorithm", [ChecksumAlgorithm.SHA256, ChecksumAlgorithm.CRC32C])
async def test_bundle_parts_carry_the_chosen_checksum_and_s3_takes_them(
    emulator: NotaryEmulator, notary_config: NotaryConfig, seaweed: SeaweedServer, db: Database,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, algorithm: ChecksumAlgorithm,
) -> None:
    zipped_with: list[ChecksumAlgorithm] = []

    class Recorded(RunningDigest):
        def __init__(self, part_size: int, chosen: ChecksumAlgorithm) -> None:
            zipped_with.append(chosen)
            super().__init__(part_size, chosen)

    monkeypatch.setattr(uploader.bundle_zip, "RunningDigest", Recorded)
    app = make_sample_app(tmp_path / "build", "Game")
    (app / "Contents" / "Resources" / "assets.bin").write_bytes(os.urandom(12 * MiB))  # 3 parts
    config = dataclasses.replace(
        notary_config, engine=dataclasses.replace(notary_config.engine, checksum=algorithm))

    outcome = await notarize(db, config, NotarizeRequest(app, skip_preflight=True, staple=False,
                                                         keep_archive=True))

    assert outcome.accepted, outcome.report
    assert zipped_with == [algorithm]  # the zipper hashed in the chosen algorithm
    upload = await db.fetchone("SELECT * FROM uploads ORDER BY id DESC LIMIT 1")
    assert upload is not None and upload["state"] == UploadState.COMPLETED
    assert upload["checksum_algorithm"] == upload["checksum_requested"] == algorithm.value
    parts = [str(row["checksum"]) for row in
             await db.fetchall("SELECT checksum FROM parts WHERE upload_id = ? ORDER BY number",
                               (upload["id"],))]
    plan = plan_upload(int(upload["size"]), int(upload["part_size"]), config.engine.limits)
    assert len(parts) == plan.part_count > 1
    assert parts == await asyncio.to_thread(  # the kept zip, each part re-read on its own
        lambda: [part_checksum_sync(Path(upload["path"]), part, algorithm)
                 for part in plan.parts()])

    submission = emulator.submissions[outcome.submission_id or ""]

    def head() -> dict[str, Any]:
        s3 = boto3.client("s3", **seaweed.client_kwargs())
        try:
            return s3.head_object(Bucket=emulator.config.bucket, Key=submission.object,
                                  ChecksumMode="ENABLED")
        finally:
            s3.close()

    stored = await asyncio.to_thread(head)
    assert stored[algorithm.s3_parameter] == composite(algorithm, parts)
