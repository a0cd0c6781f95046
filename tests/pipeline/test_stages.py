"""`Notarizer` as a runner of stages (its module docstring's order), and `Notarizer.cancel`, the
one cancel path: called by the library, and by the daemon's runner for `notaryd cancel` and
`DELETE /v1/jobs/{id}` (tests/daemon/test_end_to_end.py drives those two through a process)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from service.daemon.execution import Shared
from service.daemon.pipeline_runner import CANCELLED_REASON, PipelineRunner
from service.daemon.slots import PartSlots
from service.emulator.notary import NotaryEmulator
from service.emulator.sample_app import make_sample_app
from tests.support.files import PART, make_archive
from tests.support.notary import (
    interrupted_mid_upload,
    notarize,
    several_part_bundle,
    stapling_config,
)
from uploader.bundle_zip import archive_path_for
from uploader.database import Database
from uploader.events import Event, NotaryStageChanged
from uploader.lifecycle import NotaryStage, SubmissionState
from uploader.notary.pipeline import Notarizer, NotarizeRequest, NotaryConfig
from uploader.notary.store import SubmissionStore


def stages(seen: list[Event]) -> list[NotaryStage]:
    """The stages the run announced, each once, in the order it first announced them."""
    order: list[NotaryStage] = []
    for event in seen:
        if isinstance(event, NotaryStageChanged) and event.stage not in order:
            order.append(event.stage)
    return order


async def test_a_bundle_walks_the_stages_in_order_and_is_stapled_last(
    emulator: NotaryEmulator, notary_config: NotaryConfig, db: Database, tmp_path: Path
) -> None:
    app = make_sample_app(tmp_path / "build", "Game")
    seen: list[Event] = []
    outcome = await notarize(db, stapling_config(notary_config, emulator),
                             NotarizeRequest(app, skip_preflight=True), hooks=[seen.append])
    # package (hashing as it zips) -> submit -> upload -> verdict (wait, log) -> staple
    assert stages(seen) == [NotaryStage.HASHING, NotaryStage.SUBMITTING, NotaryStage.UPLOADING,
                            NotaryStage.WAITING, NotaryStage.FETCHING_LOG, NotaryStage.DONE]
    assert outcome.accepted and outcome.staple is not None
    assert outcome.staple.outcome == "stapled", outcome.staple


async def test_a_build_accepted_before_ends_at_the_first_stage(
    emulator: NotaryEmulator, notary_config: NotaryConfig, db: Database, tmp_path: Path
) -> None:
    app = make_sample_app(tmp_path / "build", "Game")
    for _ in range(2):
        seen: list[Event] = []
        outcome = await notarize(db, stapling_config(notary_config, emulator),
                                 NotarizeRequest(app, skip_preflight=True), hooks=[seen.append])
    assert outcome.accepted and "already notarised and stapled" in outcome.report
    assert stages(seen) == [NotaryStage.DONE]  # never twice: nothing read, nothing submitted
    assert emulator.submissions_created == 1


# -- cancel --------------------------------------------------------------------------------------

Cancel = Callable[[Database, NotaryConfig, Path, bool], Awaitable[None]]


async def by_the_library(db: Database, config: NotaryConfig, source: Path, keep: bool) -> None:
    notarizer = Notarizer(db, config)
    try:
        await notarizer.cancel(source, reason=CANCELLED_REASON, keep_archive=keep)
    finally:
        await notarizer.close()


async def by_the_daemon(db: Database, config: NotaryConfig, source: Path, keep: bool) -> None:
    async with aiohttp.ClientSession() as session:
        shared = Shared(db=db, part_slots=PartSlots(1), throttle=None, session=session)
        await PipelineRunner(config, [], shared).cancel(source, keep_archive=keep)


@pytest.mark.parametrize("cancel", [by_the_library, by_the_daemon], ids=["library", "daemon"])
@pytest.mark.parametrize("keep", [False, True], ids=["zip-removed", "zip-kept"])
async def test_cancel_ends_the_same_way_from_the_library_and_the_daemon(
    emulator: NotaryEmulator, notary_config: NotaryConfig, db: Database, tmp_path: Path,
    cancel: Cancel, keep: bool,
) -> None:
    source = await asyncio.to_thread(several_part_bundle, tmp_path)
    zipped = archive_path_for(source, notary_config.work_dir_in_effect)
    await interrupted_mid_upload(db, notary_config, source)
    assert zipped.is_file()

    await cancel(db, notary_config, source, keep)

    [record] = await SubmissionStore(db).list_submissions()
    assert (record.state, record.abandoned_reason) == (SubmissionState.ABANDONED, CANCELLED_REASON)
    aborts = {k: v for k, v in emulator.s3.requests.items() if k[0] == "AbortMultipartUpload"}
    assert aborts and all(200 <= code < 300 for _, code in aborts), aborts
    assert zipped.is_file() is keep
    # nothing left to cancel: a second cancel is a no-op
    await cancel(db, notary_config, source, keep)
    assert [r.state for r in await SubmissionStore(db).list_submissions()] == [
        SubmissionState.ABANDONED]
    # notarising it again starts over with a fresh submission, and is accepted
    again = await notarize(db, notary_config,
                           NotarizeRequest(source, skip_preflight=True, staple=False))
    assert again.accepted and again.submission_id != record.id
    assert emulator.submissions_created == 2


async def test_cancel_leaves_other_inputs_and_finished_submissions_alone(
    emulator: NotaryEmulator, notary_config: NotaryConfig, db: Database, tmp_path: Path
) -> None:
    done = make_archive(tmp_path / "Done.zip", PART)
    notarizer = Notarizer(db, notary_config)
    try:
        finished = await notarizer.run(NotarizeRequest(done, skip_preflight=True))
        other = make_archive(tmp_path / "Other.zip", 4 * PART)
        await interrupted_mid_upload(db, notary_config, other)
        assert await notarizer.cancel(done, reason="test") == []
        [(record, aborted)] = await notarizer.cancel(other, reason="test")
    finally:
        await notarizer.close()
    assert aborted and record.path == str(other)
    states = {r.id: r.state for r in await SubmissionStore(db).list_submissions()}
    assert states == {finished.submission_id: SubmissionState.DONE,
                      record.id: SubmissionState.ABANDONED}
