"""The engine's decisions against the in-memory S3 fake: real files and SQLite, no network, no
sleeping (back-off goes through a fake clock), so each scenario takes milliseconds."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.clocks import ManualClock
from tests.support.files import make_file
from tests.support.waiting import until_async
from uploader.config import EngineConfig, UploadLimits
from uploader.credentials import Credentials
from uploader.database import Database
from uploader.engine import MultipartUploader
from uploader.errors import PermanentUploadError
from uploader.events import Event, Notice, PartAcknowledged, PartRetried
from uploader.hashing import ChecksumAlgorithm
from uploader.s3fake import InMemoryS3, s3_error
from uploader.upload_session import PROBE_MAX_SECONDS

from .helpers import Recorder

PART = 64 * 1024
KEY = "build.zip"
CREDS = Credentials("AKIA", "secret", None, None)


@pytest.fixture
def fake() -> InMemoryS3:
    return InMemoryS3()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def engine(db: Database, fake: InMemoryS3, clock: ManualClock, *hooks: object,
           concurrency: int = 4) -> MultipartUploader:
    config = EngineConfig(part_size=PART, concurrency=concurrency, stall_timeout_seconds=5,
                          limits=UploadLimits(min_part_size=1))
    return MultipartUploader(db, config, hooks=hooks,  # type: ignore[arg-type]
                             sleep=clock.sleep, monotonic=clock, s3=fake.open,
                             uniform=random.Random(3).uniform)


class Acks:
    """Hook: counts committed parts and says when ``stop_at`` of them are."""

    def __init__(self, stop_at: int) -> None:
        self.count = 0
        self.stop_at = stop_at
        self.reached = asyncio.Event()

    def __call__(self, event: Event) -> None:
        if isinstance(event, PartAcknowledged):
            self.count += 1
            if self.count >= self.stop_at:
                self.reached.set()


async def interrupted_after(db: Database, fake: InMemoryS3, clock: ManualClock, path: Path,
                            acknowledged: int) -> None:
    """Run an upload and cancel it once ``acknowledged`` parts are committed (a kill, minus
    the process): whatever was in flight is lost, nothing is aborted."""
    acks = Acks(acknowledged)
    task = asyncio.create_task(engine(db, fake, clock, acks).upload(path, "bucket", KEY, CREDS))
    await acks.reached.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_resume_with_listing_and_abort_denied_resends_only_unacknowledged_parts(
    db: Database, fake: InMemoryS3, clock: ManualClock, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = make_file(tmp_path / "a.zip", 20 * PART + 11)
    fake.deny("ListParts", "AbortMultipartUpload", "HeadObject", "GetObject")
    await interrupted_after(db, fake, clock, source, 6)
    before = fake.body_bytes_received
    with caplog.at_level(logging.INFO, logger="uploader.engine"):
        result = await engine(db, fake, clock).upload(source, "bucket", KEY, CREDS)
    assert fake.objects[KEY] == source.read_bytes()
    assert result.resumed and result.confirmed
    resent = before + result.bytes_sent - source.stat().st_size
    assert resent <= 4 * PART  # at most the parts in flight at the interruption
    skipped = [r for r in caplog.records if "resuming from our own acknowledgements" in r.message]
    assert len(skipped) == 1 and skipped[0].levelno == logging.INFO
    assert fake.calls["ListParts"] == 1 and fake.calls["AbortMultipartUpload"] == 0


async def test_a_resume_says_how_many_parts_are_already_uploaded(
    db: Database, fake: InMemoryS3, clock: ManualClock, tmp_path: Path
) -> None:
    source = make_file(tmp_path / "a.zip", 12 * PART + 11)  # 13 parts
    acks = Acks(8)
    first = asyncio.create_task(engine(db, fake, clock, acks, concurrency=1).upload(
        source, "bucket", KEY, CREDS))
    await acks.reached.wait()
    first.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await first
    seen = Recorder()
    await engine(db, fake, clock, seen).upload(source, "bucket", KEY, CREDS)
    notices = [e.text for e in seen.events if isinstance(e, Notice)]
    assert notices == [f"resuming: {acks.count} of 13 parts already uploaded"]
    assert acks.count >= 8


async def test_resume_adopts_parts_listed_over_several_pages(
    db: Database, fake: InMemoryS3, clock: ManualClock, tmp_path: Path
) -> None:
    fake.list_page_size = 2
    source = make_file(tmp_path / "a.zip", 12 * PART)
    fake.lose_answer("UploadPart", times=3)  # S3 holds these parts; we never committed them
    await interrupted_after(db, fake, clock, source, 5)
    before = fake.calls["UploadPart"]
    await engine(db, fake, clock).upload(source, "bucket", KEY, CREDS)
    assert fake.objects[KEY] == source.read_bytes()
    assert fake.calls["ListParts"] >= 3  # paged
    assert fake.calls["UploadPart"] - before <= 12 - 5 - 3 + 4


async def test_listing_whose_marker_does_not_advance_is_not_followed(
    db: Database, fake: InMemoryS3, clock: ManualClock, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake.list_page_size = 1
    fake.stuck_listing = True
    source = make_file(tmp_path / "a.zip", 8 * PART)
    await interrupted_after(db, fake, clock, source, 3)
    with caplog.at_level(logging.WARNING, logger="uploader.engine"):
        await engine(db, fake, clock).upload(source, "bucket", KEY, CREDS)
    assert fake.objects[KEY] == source.read_bytes()
    assert fake.calls["ListParts"] == 1  # the second page would repeat the first
    assert any("paging did not advance" in r.message for r in caplog.records)


async def test_lost_complete_then_no_such_upload_with_head_denied_ends_unconfirmed(
    db: Database, fake: InMemoryS3, clock: ManualClock, tmp_path: Path
) -> None:
    source = make_file(tmp_path / "a.zip", 3 * PART)
    fake.deny("HeadObject", "ListParts", "AbortMultipartUpload")
    fake.lose_answer("CompleteMultipartUpload")
    result = await engine(db, fake, clock).upload(source, "bucket", KEY, CREDS)
    assert not result.confirmed
    assert fake.objects[KEY] == source.read_bytes()
    assert fake.calls["CompleteMultipartUpload"] == 2 and fake.calls["CreateMultipartUpload"] == 1
    again = await engine(db, fake, clock).upload(source, "bucket", KEY, CREDS)
    assert again.resumed and again.bytes_sent == 0  # recorded as done: not uploaded twice


async def test_lost_complete_then_no_such_upload_is_confirmed_by_head_object(
    db: Database, fake: InMemoryS3, clock: ManualClock, tmp_path: Path
) -> None:
    source = make_file(tmp_path / "a.zip", 3 * PART)
    fake.lose_answer("CompleteMultipartUpload")
    result = await engine(db, fake, clock).upload(source, "bucket", KEY, CREDS)
    assert result.confirmed and result.etag


async def test_first_complete_answering_no_such_upload_starts_the_upload_again(
    db: Database, fake: InMemoryS3, clock: ManualClock, tmp_path: Path
) -> None:
    source = make_file(tmp_path / "a.zip", 3 * PART)
    fake.fail("CompleteMultipartUpload", s3_error("NoSuchUpload"))
    result = await engine(db, fake, clock).upload(source, "bucket", KEY, CREDS)
    assert result.confirmed
    assert fake.calls["CreateMultipartUpload"] == 2
    assert fake.objects[KEY] == source.read_bytes()


async def test_denied_upload_part_fails_with_one_line_and_aborts(
    db: Database, fake: InMemoryS3, clock: ManualClock, tmp_path: Path
) -> None:
    source = make_file(tmp_path / "a.zip", 3 * PART)
    fake.deny("UploadPart")
    with pytest.raises(PermanentUploadError) as caught:
        await engine(db, fake, clock).upload(source, "bucket", KEY, CREDS)
    assert "AccessDenied" in str(caught.value) and "\n" not in str(caught.value)
    assert fake.calls["AbortMultipartUpload"] == 1 and fake.open_uploads == 0


async def test_an_outage_collapses_to_one_probe_and_recovers(
    db: Database, fake: InMemoryS3, clock: ManualClock, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = make_file(tmp_path / "a.zip", 40 * PART)
    outage_end = 120.0
    peak_after_trip = 0
    in_flight = 0
    calls_in_outage = 0
    tripped = False
    real_upload_part = fake.upload_part

    async def upload_part(**kw: object) -> dict[str, object]:
        nonlocal in_flight, peak_after_trip, calls_in_outage, tripped
        fake.outage = clock.now < outage_end
        calls_in_outage += fake.outage
        tripped = tripped or any("link looks down" in r.message for r in caplog.records)
        in_flight += 1
        if tripped and fake.outage:
            peak_after_trip = max(peak_after_trip, in_flight)
        try:
            return await real_upload_part(**kw)
        finally:
            in_flight -= 1

    fake.upload_part = upload_part  # type: ignore[method-assign]
    recorder = Recorder()
    with caplog.at_level(logging.INFO, logger="uploader.upload_session"):
        await engine(db, fake, clock, recorder, concurrency=8).upload(source, "bucket", KEY, CREDS)
    assert fake.objects[KEY] == source.read_bytes()
    assert tripped and peak_after_trip == 1
    # Eight slots tripping it, then probes no closer than half the growing cap: a handful of
    # attempts over two minutes, not hundreds.
    assert calls_in_outage <= 8 + 8 + outage_end / (PROBE_MAX_SECONDS / 2)
    assert max(clock.slept) <= PROBE_MAX_SECONDS  # a recovered link is noticed soon
    assert any("the link is back" in r.message for r in caplog.records)


async def test_isolated_resets_on_a_good_link_never_trip_the_breaker(
    db: Database, fake: InMemoryS3, clock: ManualClock, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = make_file(tmp_path / "a.zip", 60 * PART)
    fake.flaky_parts(0.2, seed=11)  # one attempt in five is reset mid-body, at random
    with caplog.at_level(logging.INFO, logger="uploader.upload_session"):
        await engine(db, fake, clock, concurrency=4).upload(source, "bucket", KEY, CREDS)
    assert fake.objects[KEY] == source.read_bytes()
    assert fake.calls["UploadPart"] > 60  # the resets happened
    assert not any("link looks down" in r.message for r in caplog.records)
    assert max(clock.slept, default=0.0) < 1.0  # only the per-part back-off, no probe pacing


@pytest.mark.parametrize("rejection", ["InvalidRequest", "InvalidArgument", "NotImplemented"])
async def test_a_rejected_checksum_falls_back_once_and_is_recorded(
    db: Database, fake: InMemoryS3, clock: ManualClock, tmp_path: Path, rejection: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = make_file(tmp_path / "a.zip", 5 * PART + 3)
    fake.fail("CreateMultipartUpload", s3_error(rejection, "CreateMultipartUpload"))
    with caplog.at_level(logging.WARNING, logger="uploader.engine"):
        result = await engine(db, fake, clock).upload(source, "bucket", KEY, CREDS)
    assert result.checksum_algorithm == "CRC32C"
    assert fake.objects[KEY] == source.read_bytes()
    lines = [r.message for r in caplog.records if "rejected the CRC64NVME checksum" in r.message]
    assert len(lines) == 1 and "using CRC32C instead" in lines[0]
    row = await db.fetchone("SELECT checksum_algorithm, checksum_requested FROM uploads")
    assert row is not None and tuple(row) == ("CRC32C", "CRC64NVME")


async def test_fallback_happens_once_then_the_refusal_is_reported(
    db: Database, fake: InMemoryS3, clock: ManualClock, tmp_path: Path
) -> None:
    source = make_file(tmp_path / "a.zip", 2 * PART)
    fake.reject_algorithms = {"CRC64NVME", "CRC32C"}
    with pytest.raises(PermanentUploadError) as caught:
        await engine(db, fake, clock).upload(source, "bucket", KEY, CREDS)
    assert "InvalidRequest" in str(caught.value) and "CRC32C" in str(caught.value)
    assert fake.calls["CreateMultipartUpload"] == 2


@pytest.mark.parametrize("algorithm", list(ChecksumAlgorithm))
async def test_every_checksum_setting_uploads_the_exact_bytes(
    db: Database, fake: InMemoryS3, clock: ManualClock, tmp_path: Path, algorithm: ChecksumAlgorithm
) -> None:
    source = make_file(tmp_path / "a.zip", 3 * PART + 5)
    config = EngineConfig(part_size=PART, concurrency=2, checksum=algorithm,
                          limits=UploadLimits(min_part_size=1))
    uploader = MultipartUploader(db, config, sleep=clock.sleep, monotonic=clock, s3=fake.open)
    result = await uploader.upload(source, "bucket", KEY, CREDS)
    assert result.checksum_algorithm == algorithm.value
    assert fake.objects[KEY] == source.read_bytes()
    assert bool(result.checksum) == algorithm.full_object


class _Killed(BaseException):
    """Stands in for SIGKILL: nothing in the engine catches it."""


async def test_a_run_killed_after_its_complete_took_effect_is_finished_not_restarted(
    db: Database, fake: InMemoryS3, clock: ManualClock, tmp_path: Path
) -> None:
    source = make_file(tmp_path / "a.zip", 4 * PART)
    fake.lose_answer("CompleteMultipartUpload")  # takes effect, the answer is lost...
    fake.fail("CompleteMultipartUpload", _Killed())  # ...and the process dies retrying it
    with pytest.raises(_Killed):
        await engine(db, fake, clock).upload(source, "bucket", KEY, CREDS)
    parts_sent = fake.calls["UploadPart"]
    result = await engine(db, fake, clock).upload(source, "bucket", KEY, CREDS)
    assert result.confirmed and fake.calls["UploadPart"] == parts_sent  # nothing sent again
    assert fake.calls["CreateMultipartUpload"] == 1
    assert fake.objects[KEY] == source.read_bytes()


async def test_after_a_restart_only_the_bytes_that_had_left_count_as_resent(
    db: Database, fake: InMemoryS3, clock: ManualClock, tmp_path: Path
) -> None:
    """Parts caught half-way by a kill are sent again whole; only the half that had gone out
    counts as re-sent (not the whole part, nor every part of the job)."""
    part = 1024 * 1024  # four 256 KiB slices: a part can be caught part-way
    config = EngineConfig(part_size=part, concurrency=4, stall_timeout_seconds=30,
                          limits=UploadLimits(min_part_size=1))

    def uploader(*hooks: object) -> MultipartUploader:
        return MultipartUploader(db, config, hooks=hooks,  # type: ignore[arg-type]
                                 sleep=clock.sleep, monotonic=clock, s3=fake.open,
                                 uniform=random.Random(3).uniform)

    source = make_file(tmp_path / "a.zip", 8 * part)
    fake.hold_parts(after_bytes=part // 2)
    killed = asyncio.create_task(uploader().upload(source, "bucket", KEY, CREDS))

    async def four_parts_half_way() -> list[int] | None:
        rows = await db.fetchall("SELECT sent_bytes FROM parts WHERE sent_bytes > 0")
        return [int(r["sent_bytes"]) for r in rows] if len(rows) == 4 else None

    try:
        half_sent = await until_async(four_parts_half_way, within=30,
                                      what="four parts on the wire, their progress recorded")
    finally:
        killed.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await killed
    fake.release_parts()
    assert all(part // 2 <= sent < part for sent in half_sent), half_sent

    recorder = Recorder()
    await uploader(recorder).upload(source, "bucket", KEY, CREDS)
    assert fake.objects[KEY] == source.read_bytes()
    assert recorder.sent == 8 * part  # every part went out whole in the second run
    assert recorder.resent == sum(half_sent)  # of which this much had gone out before


def stall_engine(db: Database, fake: InMemoryS3, clock: ManualClock, part: int,
                 *hooks: object) -> MultipartUploader:
    """One part at a time, and a stall timeout of 0.4 s by ``clock``: the watchdog's tick (a
    tenth of a second of real time) only decides how soon it looks."""
    config = EngineConfig(part_size=part, concurrency=1, stall_timeout_seconds=0.4,
                          limits=UploadLimits(min_part_size=1))
    return MultipartUploader(db, config, hooks=hooks,  # type: ignore[arg-type]
                             sleep=clock.sleep, monotonic=clock, s3=fake.open,
                             uniform=random.Random(3).uniform)


async def test_a_part_stalled_half_way_is_abandoned_by_the_watchdog_and_sent_again(
    db: Database, fake: InMemoryS3, clock: ManualClock, tmp_path: Path
) -> None:
    part = 1024 * 1024  # four 256 KiB slices: the part stops after two
    source = make_file(tmp_path / "a.zip", 2 * part)
    fake.hold_parts(after_bytes=part // 2)

    def heal_after_first_retry(event: Event) -> None:
        if isinstance(event, PartRetried):
            fake.release_parts()

    recorder = Recorder()
    upload = asyncio.create_task(stall_engine(db, fake, clock, part, recorder,
                                              heal_after_first_retry)
                                 .upload(source, "bucket", KEY, CREDS))

    async def held() -> bool:
        return fake.body_bytes_received >= part // 2

    await until_async(held, within=30, what="the first part stopped half-way")
    assert recorder.retries == []  # no time has passed by the engine's clock: no stall yet
    clock.advance(1.0)  # by the engine's clock, nothing moves for longer than the stall timeout
    result = await asyncio.wait_for(upload, 30)
    assert recorder.retries == ["stall"]
    assert fake.objects[KEY] == source.read_bytes()
    assert result.bytes_resent == part // 2  # the half that had left before the stall
    assert fake.calls["UploadPart"] == 3


class _ReadClock(ManualClock):
    """A ``ManualClock`` that counts how often the engine reads it."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


async def test_while_bytes_keep_moving_time_passing_is_no_stall(
    db: Database, fake: InMemoryS3, tmp_path: Path
) -> None:
    """Each slice of a part goes out just inside the stall timeout: slow, but moving."""
    clock = _ReadClock()
    part = 1024 * 1024
    source = make_file(tmp_path / "a.zip", 2 * part)
    real_upload_part = fake.upload_part

    async def upload_part(**kw: Any) -> dict[str, Any]:
        body = kw["Body"]

        async def slow() -> AsyncIterator[memoryview]:
            async for piece in body:
                clock.advance(0.3)  # under the 0.4 s stall timeout per slice
                reads = clock.reads

                async def watchdog_looked(reads: int = reads) -> bool:
                    return clock.reads > reads  # only the watchdog reads it meanwhile

                await until_async(watchdog_looked, within=30, what="the watchdog looked")
                yield piece

        return await real_upload_part(**{**kw, "Body": _Sized(slow(), len(body))})

    fake.upload_part = upload_part  # type: ignore[method-assign]
    recorder = Recorder()
    result = await stall_engine(db, fake, clock, part, recorder).upload(
        source, "bucket", KEY, CREDS)
    assert recorder.retries == []
    assert fake.objects[KEY] == source.read_bytes()
    assert clock.now >= 8 * 0.3 and result.bytes_resent == 0


class _Sized:
    """An async-iterable body that still has the length ``InMemoryS3`` reads."""

    def __init__(self, pieces: AsyncIterator[memoryview], length: int) -> None:
        self._pieces = pieces
        self._length = length

    def __len__(self) -> int:
        return self._length

    def __aiter__(self) -> AsyncIterator[memoryview]:
        return self._pieces
