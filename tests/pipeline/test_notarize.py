"""`Notarizer.run` end to end against the emulator: verdicts, logs, expiry, faults, preflight."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from service.emulator.faults import Faults
from service.emulator.notary import NotaryEmulator
from service.emulator.verdicts import INVALID_MARKER
from tests.support.files import PART, make_archive, zip_bytes
from uploader.database import Database
from uploader.events import Event, NotaryStageChanged
from uploader.lifecycle import NotaryStage
from uploader.notary.client import NotaryClient
from uploader.notary.errors import AgreementMissing, Unauthenticated
from uploader.notary.pipeline import (
    Notarizer,
    NotarizeRequest,
    NotaryConfig,
    PreflightFailed,
)
from uploader.notary.store import SubmissionStore

FIXTURES = Path(__file__).parent.parent / "fixtures" / "preflight"


async def notarize(db: Database, config: NotaryConfig, request: NotarizeRequest,
                   hooks: list[object] | None = None, **kwargs: object):  # type: ignore[no-untyped-def]
    notarizer = Notarizer(db, config, hooks=hooks or [], **kwargs)  # type: ignore[arg-type]
    try:
        return await notarizer.run(request)
    finally:
        await notarizer.close()


async def test_accepted_with_log_saved_and_exactly_one_submission(
    emulator: NotaryEmulator, notary_config: NotaryConfig, db: Database, tmp_path: Path
) -> None:
    archive = make_archive(tmp_path / "Game.zip", 3 * PART)
    outcome = await notarize(db, notary_config, NotarizeRequest(archive, skip_preflight=True))
    assert outcome.status == "Accepted" and outcome.accepted
    assert emulator.submissions_created == 1
    landed = emulator.submissions[outcome.submission_id or ""]
    import hashlib

    assert landed.uploaded_sha256 == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert outcome.log_path is not None and outcome.log_path.is_file()
    assert json.loads(outcome.log_path.read_text())["status"] == "Accepted"
    # A re-run of a finished notarisation does not submit again.
    again = await notarize(db, notary_config, NotarizeRequest(archive, skip_preflight=True))
    assert again.status == "Accepted"


async def test_invalid_verdict_comes_with_a_readable_report(
    emulator: NotaryEmulator, notary_config: NotaryConfig, db: Database, tmp_path: Path
) -> None:
    archive = make_archive(tmp_path / "Broken.zip", PART, marker=INVALID_MARKER)
    outcome = await notarize(db, notary_config, NotarizeRequest(archive, skip_preflight=True))
    assert outcome.status == "Invalid"
    assert "hardened runtime" in outcome.report and "App.app/Contents/MacOS/App" in outcome.report
    assert outcome.log_path is not None


async def test_credentials_expiring_mid_upload_end_accepted_on_a_new_submission(
    emulator: NotaryEmulator, notary_config: NotaryConfig, db: Database, tmp_path: Path
) -> None:
    from dataclasses import replace

    from uploader.events import CredentialsIssued
    from uploader.throttle import Throttle

    archive = make_archive(tmp_path / "Game.zip", 8 * PART)
    # The first submission's credentials last 2 s; the upload, capped at 10 MiB/s, needs ~4 s.
    emulator.config = replace(emulator.config, credential_lifetime_seconds=2)

    def later_submissions_last_12_hours(event: Event) -> None:
        if isinstance(event, CredentialsIssued):
            emulator.config = replace(emulator.config, credential_lifetime_seconds=12 * 3600)

    outcome = await notarize(db, notary_config, NotarizeRequest(archive, skip_preflight=True),
                             hooks=[later_submissions_last_12_hours],
                             throttle=Throttle(10 * 1024 * 1024))
    assert outcome.status == "Accepted"
    assert emulator.submissions_created == 2
    records = await SubmissionStore(db).list_submissions()
    abandoned = [r for r in records if r.state == "abandoned"]
    assert len(abandoned) == 1 and "expired" in (abandoned[0].abandoned_reason or "")


async def test_polls_survive_429_5xx_and_resets(
    emulator: NotaryEmulator, notary_config: NotaryConfig, db: Database, tmp_path: Path
) -> None:
    archive = make_archive(tmp_path / "Game.zip", PART)
    emulator.faults = Faults(endpoints=frozenset({"status"}), rate_limit_next=3,
                             server_error_next=3, reset_status_next=3)
    slept: list[float] = []

    async def fast_sleep(seconds: float) -> None:
        slept.append(seconds)
        await asyncio.sleep(min(seconds, 0.05))

    outcome = await notarize(db, notary_config, NotarizeRequest(archive, skip_preflight=True), sleep=fast_sleep)
    assert outcome.status == "Accepted"
    codes = {code for (endpoint, code) in emulator.requests if endpoint == "status"}
    assert {"429", "503"} <= codes
    assert max(slept) >= 48, "a 429 must back off hard (at least a minute, less jitter)"


async def test_stuck_submission_keeps_being_polled_with_short_lived_tokens(
    emulator: NotaryEmulator, notary_config: NotaryConfig, db: Database, tmp_path: Path
) -> None:
    from dataclasses import replace

    archive = make_archive(tmp_path / "Game.zip", PART)
    emulator.faults.stuck_next = 1
    config = replace(notary_config, stuck_after_seconds=0.5)
    stuck_seen = asyncio.Event()

    def watch(event: Event) -> None:
        if isinstance(event, NotaryStageChanged) and event.detail.startswith("stuck"):
            stuck_seen.set()

    run = asyncio.create_task(notarize(db, config, NotarizeRequest(archive, skip_preflight=True), hooks=[watch]))
    await asyncio.wait_for(stuck_seen.wait(), 30)
    assert not run.done()
    (submission_id,) = emulator.submissions
    emulator.release(submission_id)
    outcome = await asyncio.wait_for(run, 30)
    assert outcome.status == "Accepted"
    assert 0 < emulator.token_stats.max_lifetime_seconds <= 20 * 60


async def test_wrong_key_id_names_key_and_issuer(
    emulator: NotaryEmulator, notary_config: NotaryConfig, db: Database, tmp_path: Path
) -> None:
    from dataclasses import replace

    archive = make_archive(tmp_path / "Game.zip", PART)
    config = replace(notary_config, key_id="WRONGKEY99")
    with pytest.raises(Unauthenticated) as caught:
        await notarize(db, config, NotarizeRequest(archive, skip_preflight=True))
    assert "WRONGKEY99" in str(caught.value) and notary_config.issuer_id in str(caught.value)
    assert emulator.submissions_created == 0


async def test_missing_agreement_says_so(
    emulator: NotaryEmulator, notary_config: NotaryConfig, db: Database, tmp_path: Path
) -> None:
    emulator.faults.agreement_missing = True
    with pytest.raises(AgreementMissing, match=r"(?i)agreement"):
        await notarize(db, notary_config, NotarizeRequest(
            make_archive(tmp_path / "a.zip", PART), skip_preflight=True))


async def test_preflight_errors_stop_before_any_upload(
    emulator: NotaryEmulator, notary_config: NotaryConfig, db: Database, tmp_path: Path
) -> None:
    library = (FIXTURES / "markupsafe-3.0.2-_speedups-universal2.so").read_bytes()
    archive = tmp_path / "Unsigned.zip"
    archive.write_bytes(zip_bytes({"Game.app/Contents/Frameworks/_speedups.so": library}))
    seen: list[Event] = []
    with pytest.raises(PreflightFailed) as caught:
        await notarize(db, notary_config, NotarizeRequest(archive), hooks=[seen.append])
    assert "_speedups.so" in caught.value.report
    # preflight is the first stage announced, and the last
    assert [e.stage for e in seen if isinstance(e, NotaryStageChanged)] == [NotaryStage.PREFLIGHT]
    assert emulator.submissions_created == 0
    skipped = await notarize(db, notary_config, NotarizeRequest(archive, skip_preflight=True))
    assert skipped.submission_id is not None


async def test_a_submission_whose_answer_was_lost_is_found_not_duplicated_silently(
    emulator: NotaryEmulator, notary_config: NotaryConfig, db: Database, tmp_path: Path
) -> None:
    """Death between POST and commit: the orphan is looked up in history and accounted for."""
    archive = make_archive(tmp_path / "Game.zip", PART)
    import hashlib

    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    store = SubmissionStore(db)
    intent = await store.record_intent("Game.zip", sha, str(archive))
    notarizer = Notarizer(db, notary_config)
    client: NotaryClient = await notarizer.client()
    orphan = await client.submit("Game.zip", sha)  # its answer "dies" with the process
    await notarizer.close()

    outcome = await notarize(db, notary_config, NotarizeRequest(archive, skip_preflight=True))
    assert outcome.status == "Accepted"
    assert outcome.submission_id != orphan.id
    assert emulator.submissions_created == 2  # the orphan plus exactly one new one
    assert not await store.dangling_intents(sha)
    row = await db.fetchone("SELECT submission_id FROM submission_intents WHERE id = ?", (intent,))
    assert row is not None and row["submission_id"] == orphan.id


async def test_a_log_that_answers_404_right_after_the_verdict_is_asked_again(
    emulator: NotaryEmulator, notary_config: NotaryConfig, db: Database, tmp_path: Path
) -> None:
    archive = make_archive(tmp_path / "Game.zip", PART)
    emulator.faults = Faults(endpoints=frozenset({"logs"}), server_error_status=404,
                             server_error_next=3)

    async def no_wait(_seconds: float) -> None:
        await asyncio.sleep(0)

    outcome = await notarize(db, notary_config, NotarizeRequest(archive, skip_preflight=True), sleep=no_wait)
    assert outcome.status == "Accepted" and outcome.log_path is not None
    assert emulator.requests[("logs", "404")] == 3
