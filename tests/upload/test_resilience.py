"""The engine through a hostile network: the fault-injecting proxy in front of real SeaweedFS.

Every scenario ends by comparing the SHA-256 of what the server stored with the source file.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path

import pytest

from service.emulator.faultplan import Fault, FaultPlan, Operation
from service.emulator.faultproxy import FaultProxyThread
from service.emulator.seaweed import SeaweedServer
from tests.support.files import PART, make_file
from uploader.database import Database
from uploader.engine import MultipartUploader
from uploader.errors import CredentialsExpiredError, TransientUploadError
from uploader.events import Event, PartAcknowledged, PartRetried
from uploader.retry import RetryPolicy

from .helpers import Recorder, config, credentials, sha256_of_file, stored_sha256

FAST_RETRY = RetryPolicy(initial_delay_seconds=0.05, max_delay_seconds=0.5,
                         throttled_initial_delay_seconds=0.1)


async def test_hostile_link_completes_with_the_right_bytes_and_bounded_waste(
    seaweed: SeaweedServer, bucket: str, db: Database, tmp_path: Path, fault_proxy: FaultProxyThread
) -> None:
    source = make_file(tmp_path / "build.zip", 16 * PART + 4321)
    fault_proxy.set_plan(FaultPlan(reset=0.2, internal_error=0.04, slow_down=0.03, request_timeout=0.03,
                             stall=0.05, stall_seconds=600, lost_response=0.02, seed=7))
    recorder = Recorder()
    engine = MultipartUploader(
        db, config(fault_proxy.url, stall_timeout_seconds=3.0, retry=FAST_RETRY), hooks=[recorder])
    await engine.upload(source, bucket, "hostile.zip", credentials(seaweed))
    assert stored_sha256(seaweed, bucket, "hostile.zip") == sha256_of_file(source)
    stats = fault_proxy.stats
    # Counted at the proxy: aiohttp re-sends some failed requests itself, unseen by the engine.
    injected = sum(count for outcome, count in stats.outcomes.items() if outcome in set(Fault))
    assert injected, f"the plan injected no fault; the test proves nothing ({stats})"
    size = source.stat().st_size
    assert stats.request_body_bytes_received <= 1.5 * size
    # Our byte counts never under-report the part bytes that reached the server (a reset drops
    # bytes still in socket buffers, so we may count a little more than the proxy read; the
    # CompleteMultipartUpload XML is no part's bytes), and nothing beyond the file's size counts
    # as first-time bytes: every repeat is "re-sent", aiohttp's own silent re-sends included.
    assert recorder.sent >= stats.part_body_bytes_received
    assert recorder.sent - recorder.resent <= size
    # What a failed attempt counts beyond what the proxy read is what sat unread in the proxy's
    # kernel buffers when it reset: at most that attempt's part (loopback buffers are large, and
    # a loaded machine reads them slowly, so this is not a fixed share of the file).
    failed_attempts = stats.operations["UploadPart"] - len(set(recorder.acknowledged))
    assert recorder.sent <= stats.part_body_bytes_received + failed_attempts * PART


async def test_hostile_link_with_a_total_outage_sends_at_most_one_and_a_half_times_the_file(
    seaweed: SeaweedServer, bucket: str, db: Database, tmp_path: Path, fault_proxy: FaultProxyThread,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The fast version of the 2 GiB soak (scripts/soak.py hostile --outage-seconds 120)."""
    source = make_file(tmp_path / "build.zip", 64 * PART + 99)
    size = source.stat().st_size
    fault_proxy.set_plan(FaultPlan(reset=0.2, internal_error=0.04, slow_down=0.03, request_timeout=0.03,
                             stall=0.05, stall_seconds=600, seed=5,
                             outage_after_bytes=int(0.3 * size), outage_seconds=2.0))
    engine = MultipartUploader(
        db, config(fault_proxy.url, stall_timeout_seconds=1.0, retry=FAST_RETRY))
    with caplog.at_level(logging.INFO, logger="uploader.upload_session"):
        await engine.upload(source, bucket, "outage.zip", credentials(seaweed))
    assert stored_sha256(seaweed, bucket, "outage.zip") == sha256_of_file(source)
    assert fault_proxy.stats.outcomes.get("outage", 0) > 0, "the outage never began"
    assert any("link looks down" in r.message for r in caplog.records)
    stats = fault_proxy.stats
    assert stats.request_body_bytes_received <= 1.5 * size, str(stats.to_json())


@pytest.mark.parametrize("fault", ["stall", "mid_body_stall", "expect_hang"])
async def test_a_hung_request_costs_one_stall_timeout_not_the_servers_patience(
    seaweed: SeaweedServer, bucket: str, db: Database, tmp_path: Path, fault_proxy: FaultProxyThread,
    fault: str,
) -> None:
    """Includes aiobotocore's `Expect: 100-continue` hang: no read timeout covers that wait."""
    source = make_file(tmp_path / "a.zip", 2 * PART)
    fault_proxy.set_plan(FaultPlan(**{fault: 1.0}, stall_seconds=600))  # hang every UploadPart

    def heal_after_first_retry(event: Event) -> None:
        if isinstance(event, PartRetried):
            fault_proxy.set_plan(FaultPlan())

    recorder = Recorder()
    engine = MultipartUploader(
        db, config(fault_proxy.url, stall_timeout_seconds=1.0, concurrency=1, retry=FAST_RETRY),
        hooks=[recorder, heal_after_first_retry])
    async with asyncio.timeout(120):  # a guard: without the watchdog the part hangs for 600 s
        await engine.upload(source, bucket, "k", credentials(seaweed))
    assert recorder.retries[0] in ("stall", "timeout")  # our watchdog or the read timeout
    assert stored_sha256(seaweed, bucket, "k") == sha256_of_file(source)


async def test_slow_but_moving_link_is_never_treated_as_a_stall(
    seaweed: SeaweedServer, bucket: str, db: Database, tmp_path: Path, fault_proxy: FaultProxyThread
) -> None:
    source = make_file(tmp_path / "a.zip", 2 * PART)
    # 4 MiB/s shared by both parts: each 5 MiB part takes ~2.5 s, far beyond the 1 s stall timeout.
    fault_proxy.set_plan(FaultPlan(bandwidth_bytes_per_second=4 * 1024 * 1024))
    recorder = Recorder()
    engine = MultipartUploader(db, config(fault_proxy.url, stall_timeout_seconds=1.0, concurrency=2),
                               hooks=[recorder])
    await engine.upload(source, bucket, "k", credentials(seaweed))
    assert recorder.retries == []
    assert stored_sha256(seaweed, bucket, "k") == sha256_of_file(source)


async def test_expired_token_surfaces_and_new_credentials_resume(
    seaweed: SeaweedServer, bucket: str, db: Database, tmp_path: Path, fault_proxy: FaultProxyThread
) -> None:
    source = make_file(tmp_path / "a.zip", 6 * PART)

    def expire_after_two(event: Event) -> None:
        if isinstance(event, PartAcknowledged) and event.part_number >= 2:
            fault_proxy.expire_credentials()

    engine_config = config(fault_proxy.url, concurrency=1, retry=FAST_RETRY)
    with pytest.raises(CredentialsExpiredError):
        await MultipartUploader(db, engine_config, hooks=[expire_after_two]).upload(
            source, bucket, "k", credentials(seaweed))
    fault_proxy.set_plan(dataclasses.replace(fault_proxy.plan, expired_token=False))
    recorder = Recorder()
    result = await MultipartUploader(db, engine_config, hooks=[recorder]).upload(
        source, bucket, "k", credentials(seaweed))
    assert result.resumed
    assert recorder.sent <= 4 * PART
    assert stored_sha256(seaweed, bucket, "k") == sha256_of_file(source)


async def test_complete_whose_answer_was_lost_is_recognised_as_done(
    seaweed: SeaweedServer, bucket: str, db: Database, tmp_path: Path, fault_proxy: FaultProxyThread
) -> None:
    """The first Complete takes effect but the client sees a reset; the retry is answered (SeaweedFS
    repeats its answer; S3 may say NoSuchUpload, and HeadObject then confirms the object)."""
    source = make_file(tmp_path / "a.zip", 2 * PART)
    fault_proxy.set_plan(FaultPlan(lost_response=1.0,
                             operations=frozenset({Operation.COMPLETE_MULTIPART_UPLOAD})))

    async def heal_after_the_first_loss() -> None:
        # The proxy lives on another thread and has no event to wait on: poll its counters.
        while not fault_proxy.stats.outcomes.get("lost_response"):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        fault_proxy.set_plan(FaultPlan())

    healer = asyncio.create_task(heal_after_the_first_loss())
    engine = MultipartUploader(db, config(fault_proxy.url, retry=FAST_RETRY))
    try:
        await engine.upload(source, bucket, "k", credentials(seaweed))
    finally:  # an upload that finished without a loss leaves the healer waiting for one
        healer.cancel()
        await asyncio.gather(healer, return_exceptions=True)
    stats = fault_proxy.stats
    assert stats.outcomes.get("lost_response", 0) >= 1, "no Complete lost its answer: the test proves nothing"
    assert stats.operations.get(Operation.COMPLETE_MULTIPART_UPLOAD, 0) >= 2, stats.operations  # sent again
    assert stored_sha256(seaweed, bucket, "k") == sha256_of_file(source)


async def test_upload_part_sends_expect_100_continue_so_a_refusal_costs_no_body(
    seaweed: SeaweedServer, bucket: str, db: Database, tmp_path: Path, fault_proxy: FaultProxyThread
) -> None:
    """The wire truth behind s3client's comment: every UploadPart carries `Expect:
    100-continue`, so the proxy answers its 503 before the body and no body byte is sent
    (without Expect it would read and discard the whole part first)."""
    source = make_file(tmp_path / "a.zip", 2 * PART)
    fault_proxy.set_plan(FaultPlan(slow_down=1.0))
    engine = MultipartUploader(db, config(fault_proxy.url, retry=dataclasses.replace(
        FAST_RETRY, max_attempts=2)))
    with pytest.raises(TransientUploadError):
        await engine.upload(source, bucket, "k", credentials(seaweed))
    stats = fault_proxy.stats
    assert stats.outcomes.get("slow_down", 0) >= 2
    assert stats.request_body_bytes_received == 0
