"""The stores enforce the lifecycle tables: every allowed move passes, every other one raises
``IllegalTransition`` and changes nothing; and the engine's real runs (real files, real SQLite,
the in-memory S3 with its faults) only ever make moves the upload table holds."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections.abc import Awaitable, Callable, Iterator
from enum import Enum
from pathlib import Path

import pytest

from tests.support.clocks import ManualClock
from tests.support.files import make_file
from uploader.config import EngineConfig, UploadLimits
from uploader.credentials import Credentials
from uploader.database import Database
from uploader.engine import MultipartUploader
from uploader.errors import PermanentUploadError
from uploader.events import Event, PartAcknowledged
from uploader.hashing import ChecksumAlgorithm
from uploader.lifecycle import (
    SUBMISSION_LIFECYCLE,
    UPLOAD_LIFECYCLE,
    IllegalTransition,
    Lifecycle,
    SubmissionState,
    UploadState,
)
from uploader.notary.client import NewSubmission
from uploader.notary.store import SubmissionStore
from uploader.s3fake import InMemoryS3, s3_error
from uploader.source_file import FileIdentity
from uploader.upload_state import UploadStore

PART = 64 * 1024
KEY = "build.zip"
CREDS = Credentials("AKIA", "secret", None, None)
STORED_UPLOAD_STATES = [s for s in UploadState if s is not UploadState.HASHING]  # events only

Move = tuple[str, str, str]  # lifecycle name, from, to


@pytest.fixture
def moves(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Move]]:
    """Every move a store checks, whether allowed or not."""
    seen: list[Move] = []
    check = Lifecycle.check

    def recording(self: Lifecycle[Enum], current: Enum, new: Enum, *, what: str = "") -> None:
        seen.append((self.name, str(current.value), str(new.value)))
        check(self, current, new, what=what)

    monkeypatch.setattr(Lifecycle, "check", recording)
    yield seen


# -- the tables, move by move ------------------------------------------------------------------


async def upload_in(db: Database, tmp_path: Path, state: UploadState) -> int:
    source = tmp_path / "a.bin"
    source.write_bytes(b"x" * 10)
    record = await UploadStore(db).create(FileIdentity.of(source), 8, ChecksumAlgorithm.CRC32,
                                          "bucket", "key", "")
    await db.execute("UPDATE uploads SET state = ? WHERE id = ?", (state.value, record.id))
    return record.id


async def test_upload_store_allows_exactly_the_table(db: Database, tmp_path: Path) -> None:
    store = UploadStore(db)
    for current, new in itertools.product(STORED_UPLOAD_STATES, repeat=2):
        upload_id = await upload_in(db, tmp_path, current)
        move = (store.forget_parts(upload_id) if new is UploadState.PLANNED
                else store.set_state(upload_id, new))
        if UPLOAD_LIFECYCLE.allows(current, new):
            await move
            assert (await store.get(upload_id)).state is new, (current, new)
        else:
            with pytest.raises(IllegalTransition, match=f"is {current}; it cannot become {new}"):
                await move
            assert (await store.get(upload_id)).state is current, (current, new)
    with pytest.raises(KeyError):
        await store.set_state(9999, UploadState.FAILED)


async def test_forgetting_parts_of_a_finished_upload_keeps_them(
    db: Database, tmp_path: Path
) -> None:
    store = UploadStore(db)
    upload_id = await upload_in(db, tmp_path, UploadState.COMPLETED)
    await store.mark_part_done(upload_id, 1, '"e1"')
    with pytest.raises(IllegalTransition):
        await store.forget_parts(upload_id)
    assert [p.done for p in await store.parts(upload_id)] == [True, False]


async def test_submission_store_allows_exactly_the_table(db: Database) -> None:
    store = SubmissionStore(db)
    targets: dict[SubmissionState, Callable[[str], Awaitable[None]]] = {
        SubmissionState.UPLOADING: store.mark_uploading,
        SubmissionState.UPLOADED: store.mark_uploaded,
        SubmissionState.DONE: lambda sid: store.mark_done(sid, "Accepted", "/logs/x.json"),
        SubmissionState.ABANDONED: lambda sid: store.mark_abandoned(sid, "given up"),
    }
    for n, (current, new) in enumerate(itertools.product(SubmissionState, targets)):
        sid = f"SUB-{n}"
        await store.save_submission(
            NewSubmission(sid, "bucket", "object", Credentials("ASIA", "s", "t", 1.0)),
            name="A.zip", sha256="ab", path="/A.zip", issued_at=0.0)
        await db.execute("UPDATE submissions SET state = ? WHERE id = ?", (current.value, sid))
        if SUBMISSION_LIFECYCLE.allows(current, new):
            await targets[new](sid)  # looked up case-insensitively, as ``get`` does
            record = await store.get(sid)
            assert record is not None and record.state is new, (current, new)
        else:
            with pytest.raises(IllegalTransition, match=f"is {current}; it cannot become {new}"):
                await targets[new](sid)
            record = await store.get(sid)
            assert record is not None and record.state is current, (current, new)
            assert record.abandoned_reason is None and record.log_path is None
    with pytest.raises(KeyError):
        await store.mark_uploading("missing")


def test_terminal_states() -> None:
    assert UPLOAD_LIFECYCLE.terminal == {UploadState.COMPLETED, UploadState.FAILED,
                                         UploadState.ABORTED}
    assert SUBMISSION_LIFECYCLE.terminal == {SubmissionState.DONE, SubmissionState.ABANDONED}


# -- the engine's real runs ----------------------------------------------------------------------


class _Killed(BaseException):
    """Stands in for SIGKILL: nothing in the engine catches it."""


class Run:
    def __init__(self, db: Database, fake: InMemoryS3, source: Path) -> None:
        self.db, self.fake, self.source, self.clock = db, fake, source, ManualClock()

    def engine(self, *hooks: Callable[[Event], None]) -> MultipartUploader:
        config = EngineConfig(part_size=PART, concurrency=4, stall_timeout_seconds=5,
                              limits=UploadLimits(min_part_size=1))
        return MultipartUploader(self.db, config, hooks=hooks, sleep=self.clock.sleep,
                                 monotonic=self.clock, s3=self.fake.open,
                                 uniform=random.Random(3).uniform)

    async def upload(self, *, restart: bool = False) -> None:
        await self.engine().upload(self.source, "bucket", KEY, CREDS, restart=restart)

    async def interrupted(self, acknowledged: int = 2) -> None:
        """Cancelled once ``acknowledged`` parts are committed, as a kill would stop it."""
        reached = asyncio.Event()
        acks = 0

        def count(event: Event) -> None:
            nonlocal acks
            acks += isinstance(event, PartAcknowledged)
            if acks >= acknowledged:
                reached.set()

        task = asyncio.create_task(self.engine(count).upload(self.source, "bucket", KEY, CREDS))
        await reached.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def clean(run: Run) -> None:
    await run.upload()


async def gone_mid_upload(run: Run) -> None:
    run.fake.fail("UploadPart", s3_error("NoSuchUpload"))
    await run.upload()


async def gone_at_first_complete(run: Run) -> None:
    run.fake.fail("CompleteMultipartUpload", s3_error("NoSuchUpload"))
    await run.upload()


async def denied_part(run: Run) -> None:
    run.fake.deny("UploadPart")
    with pytest.raises(PermanentUploadError):
        await run.upload()
    run.fake = InMemoryS3()  # allowed now: the failed upload is not resumed, a new one starts
    await run.upload()


async def killed_while_completing(run: Run) -> None:
    run.fake.fail("CompleteMultipartUpload", _Killed())
    with pytest.raises(_Killed):
        await run.upload()
    await run.upload()


async def killed_after_complete_took_effect(run: Run) -> None:
    run.fake.lose_answer("CompleteMultipartUpload")
    run.fake.fail("CompleteMultipartUpload", _Killed())
    with pytest.raises(_Killed):
        await run.upload()
    await run.upload()


async def interrupted_then_resumed(run: Run) -> None:
    await run.interrupted()
    await run.upload()


async def changed_then_restarted(run: Run) -> None:
    await run.interrupted()
    make_file(run.source, 6 * PART)
    await run.upload(restart=True)


async def interrupted_then_aborted(run: Run) -> None:
    await run.interrupted()
    assert await run.engine().abort(run.source, "bucket", KEY, CREDS)


_P, _U, _C = UploadState.PLANNED, UploadState.UPLOADING, UploadState.COMPLETING
_DONE, _F, _A = UploadState.COMPLETED, UploadState.FAILED, UploadState.ABORTED

RUNS: list[tuple[Callable[[Run], Awaitable[None]], set[tuple[UploadState, UploadState]]]] = [
    (clean, {(_P, _U), (_U, _C), (_C, _DONE)}),
    (gone_mid_upload, {(_P, _U), (_U, _P), (_U, _C), (_C, _DONE)}),
    (gone_at_first_complete, {(_U, _C), (_C, _P), (_P, _U), (_C, _DONE)}),
    (denied_part, {(_P, _U), (_U, _F), (_C, _DONE)}),
    (killed_while_completing, {(_U, _C), (_C, _U), (_C, _DONE)}),
    (killed_after_complete_took_effect, {(_U, _C), (_C, _DONE)}),
    (interrupted_then_resumed, {(_P, _U), (_U, _U), (_U, _C), (_C, _DONE)}),
    (changed_then_restarted, {(_P, _U), (_U, _A), (_C, _DONE)}),
    (interrupted_then_aborted, {(_P, _U), (_U, _A)}),
]


@pytest.mark.parametrize(("scenario", "expected"), RUNS, ids=[run.__name__ for run, _ in RUNS])
async def test_the_engines_runs_make_only_moves_the_table_holds(
    db: Database, moves: list[Move], tmp_path: Path,
    scenario: Callable[[Run], Awaitable[None]], expected: set[tuple[UploadState, UploadState]],
) -> None:
    run = Run(db, InMemoryS3(), make_file(tmp_path / "a.zip", 5 * PART + 11))
    await scenario(run)
    made = {(UploadState(a), UploadState(b)) for name, a, b in moves if name == "upload"}
    assert all(UPLOAD_LIFECYCLE.allows(a, b) for a, b in made), made
    assert expected <= made, expected - made
