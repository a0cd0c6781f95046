"""The pipeline's real runs (the emulator in front of SeaweedFS) and the daemon's cancel make only
moves the upload and submission tables hold."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from enum import Enum
from pathlib import Path

import aiohttp
import pytest

from service.daemon.execution import Shared
from service.daemon.pipeline_runner import PipelineRunner
from service.daemon.slots import PartSlots
from service.emulator.notary import NotaryEmulator
from tests.support.files import PART, make_archive
from tests.support.notary import interrupted_mid_upload, several_part_bundle
from uploader.database import Database
from uploader.lifecycle import (
    SUBMISSION_LIFECYCLE,
    UPLOAD_LIFECYCLE,
    Lifecycle,
    SubmissionState,
    UploadState,
)
from uploader.notary.pipeline import Notarizer, NotarizeRequest, NotaryConfig
from uploader.notary.store import SubmissionStore

_S = SubmissionState
_U = UploadState


@pytest.fixture
def moves(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[tuple[Enum, Enum]]]:
    seen: set[tuple[Enum, Enum]] = set()
    check = Lifecycle.check

    def recording(self: Lifecycle[Enum], current: Enum, new: Enum, *, what: str = "") -> None:
        seen.add((current, new))
        check(self, current, new, what=what)

    monkeypatch.setattr(Lifecycle, "check", recording)
    yield seen


def assert_allowed(moves: set[tuple[Enum, Enum]]) -> None:
    for current, new in moves:
        if isinstance(current, UploadState) and isinstance(new, UploadState):
            assert UPLOAD_LIFECYCLE.allows(current, new), (current, new)
        else:
            assert isinstance(current, SubmissionState) and isinstance(new, SubmissionState)
            assert SUBMISSION_LIFECYCLE.allows(current, new), (current, new)


async def test_an_accepted_run_walks_both_tables(
    emulator: NotaryEmulator, notary_config: NotaryConfig, db: Database, tmp_path: Path,
    moves: set[tuple[Enum, Enum]],
) -> None:
    archive = make_archive(tmp_path / "Game.zip", 2 * PART)
    notarizer = Notarizer(db, notary_config)
    try:
        outcome = await notarizer.run(NotarizeRequest(archive, skip_preflight=True))
    finally:
        await notarizer.close()
    assert outcome.accepted
    assert_allowed(moves)
    assert {(_S.CREATED, _S.UPLOADING), (_S.UPLOADING, _S.UPLOADED), (_S.UPLOADED, _S.DONE),
            (_U.PLANNED, _U.UPLOADING), (_U.UPLOADING, _U.COMPLETING),
            (_U.COMPLETING, _U.COMPLETED)} <= moves


@pytest.mark.parametrize("kind", ["zip", "bundle"])
async def test_a_daemon_cancel_abandons_the_submission_and_aborts_its_upload(
    emulator: NotaryEmulator, notary_config: NotaryConfig, db: Database, tmp_path: Path,
    moves: set[tuple[Enum, Enum]], kind: str,
) -> None:
    source = (make_archive(tmp_path / "Game.zip", 4 * PART) if kind == "zip"
              else await asyncio.to_thread(several_part_bundle, tmp_path))
    await interrupted_mid_upload(db, notary_config, source)
    async with aiohttp.ClientSession() as session:
        shared = Shared(db=db, part_slots=PartSlots(1), throttle=None, session=session)
        await PipelineRunner(notary_config, [], shared).cancel(source)

    [record] = await SubmissionStore(db).list_submissions()
    assert record.state is _S.ABANDONED
    assert_allowed(moves)
    assert {(_S.CREATED, _S.UPLOADING), (_S.UPLOADING, _S.ABANDONED),
            (_U.PLANNED, _U.UPLOADING), (_U.UPLOADING, _U.ABORTED)} <= moves
