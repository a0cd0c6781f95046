"""SubmissionStore on a real SQLite database."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.clocks import ManualClock
from tests.support.postgres import OpenDb
from uploader.credentials import Credentials
from uploader.database import Database
from uploader.lifecycle import IllegalTransition, SubmissionState
from uploader.notary.client import NewSubmission
from uploader.notary.store import SubmissionStore


def _new(submission_id: str, expires_at: float = 1_700_043_200.0) -> NewSubmission:
    return NewSubmission(
        id=submission_id,
        bucket="notary-submissions-prod",
        object=f"prod/AROA:{submission_id}",
        credentials=Credentials("ASIAKEY", "secret", "token", expires_at=expires_at),
    )


async def test_intent_then_submission_lifecycle(tmp_path: Path, open_db: OpenDb) -> None:
    clock = ManualClock(1_700_000_000.0)
    db = await open_db(tmp_path / "state.db")
    try:
        store = SubmissionStore(db, clock=clock)
        intent = await store.record_intent("App.zip", "ab" * 32, "/b/App.zip")
        [dangling] = await store.dangling_intents()
        assert (dangling.id, dangling.name, dangling.started_at) == (intent, "App.zip", clock.now)

        clock.now += 1
        record = await store.save_submission(
            _new("aaaa-1"),
            name="App.zip",
            sha256="ab" * 32,
            path="/b/App.zip",
            issued_at=clock.now - 0.5,
            webhook="https://hook",
            intent_id=intent,
        )
        assert await store.dangling_intents() == []
        assert record.state is SubmissionState.CREATED and record.webhook == "https://hook"
        assert record.credentials == Credentials("ASIAKEY", "secret", "token", 1_700_043_200.0)
        assert record.credentials_issued_at == clock.now - 0.5
        assert (await store.find_active("ab" * 32, "/b/App.zip")) == record
        assert await store.find_active("ab" * 32, "/other/App.zip") is None

        await store.mark_uploading("aaaa-1")
        await store.mark_uploaded("aaaa-1")
        await store.set_notary_status("aaaa-1", "In Progress")
        clock.now += 60
        await store.mark_done("aaaa-1", "Accepted", "/state/logs/aaaa-1.json")
        done = await store.get("AAAA-1")  # ids are looked up case-insensitively
        assert done is not None
        assert (done.state, done.notary_status, done.log_path, done.updated_at) == (
            SubmissionState.DONE,
            "Accepted",
            "/state/logs/aaaa-1.json",
            clock.now,
        )
        assert await store.find_active("ab" * 32, "/b/App.zip") is None
        assert (await store.find_latest("ab" * 32, "/b/App.zip")) == done
        with pytest.raises(IllegalTransition, match="is done; it cannot become abandoned"):
            await store.mark_abandoned("aaaa-1", "late")
    finally:
        await db.close()


async def test_abandon_and_replace_keeps_both_records(tmp_path: Path, open_db: OpenDb) -> None:
    clock = ManualClock(1_700_000_000.0)
    db = await open_db(tmp_path / "state.db")
    try:
        store = SubmissionStore(db, clock=clock)
        await store.save_submission(
            _new("old"), name="A.zip", sha256="cd" * 32, path="/A.zip", issued_at=clock.now
        )
        await store.mark_uploading("old")
        await store.mark_abandoned("old", "S3 credentials expired mid-upload")
        clock.now += 5
        await store.save_submission(
            _new("new"), name="A.zip", sha256="cd" * 32, path="/A.zip", issued_at=clock.now
        )
        active = await store.find_active("cd" * 32, "/A.zip")
        assert active is not None and active.id == "new"
        old = await store.get("old")
        assert old is not None
        assert (old.state, old.abandoned_reason) == (
            SubmissionState.ABANDONED,
            "S3 credentials expired mid-upload",
        )
        assert [r.id for r in await store.list_submissions()] == ["new", "old"]
        assert [r.id for r in await store.list_submissions(include_finished=False)] == ["new"]
        with pytest.raises(KeyError):
            await store.mark_uploaded("missing")
    finally:
        await db.close()


async def test_dangling_intent_survives_reopen_and_can_be_resolved(tmp_path: Path, open_db: OpenDb) -> None:
    """A crash between POST and recording the answer leaves the intent for recovery."""
    path = tmp_path / "state.db"
    db = await open_db(path)
    intent = await SubmissionStore(db).record_intent("App.zip", "ef" * 32, "/App.zip")
    await db.close()  # "crash"

    db = await open_db(path)
    try:
        store = SubmissionStore(db)
        [dangling] = await store.dangling_intents(sha256="ef" * 32)
        assert dangling.id == intent and dangling.submission_id is None
        assert await store.dangling_intents(sha256="00" * 32) == []
        await store.attach_intent(intent, "found-in-history")
        assert await store.dangling_intents() == []
        other = await store.record_intent("App.zip", "ef" * 32, "/App.zip")
        await store.discard_intent(other)
        assert await store.dangling_intents() == []
    finally:
        await db.close()


async def test_duplicate_submission_id_is_refused(tmp_path: Path, open_db: OpenDb) -> None:
    import sqlite3

    db = await open_db(tmp_path / "state.db")
    try:
        store = SubmissionStore(db)
        intent = await store.record_intent("A.zip", "11" * 32, "/A.zip")
        await store.save_submission(
            _new("x"), name="A.zip", sha256="11" * 32, path="/A.zip", issued_at=0
        )
        with pytest.raises(sqlite3.IntegrityError):
            await store.save_submission(
                _new("x"),
                name="A.zip",
                sha256="11" * 32,
                path="/A.zip",
                issued_at=0,
                intent_id=intent,
            )
        # the failed transaction rolled back as a whole: the intent was not attached
        assert [i.id for i in await store.dangling_intents()] == [intent]
    finally:
        await db.close()


async def test_decided_since_names_only_a_verdict_reached_after_the_wait_began(db: Database) -> None:
    clock = ManualClock(1_700_000_000.0)
    store = SubmissionStore(db, clock=clock)
    sha = "ef" * 32
    await store.save_submission(_new("early"), name="A.zip", sha256=sha, path="/A.zip",
                                issued_at=clock.now)
    await store.mark_uploading("early")
    await store.mark_uploaded("early")
    await store.mark_done("early", "Invalid")  # decided before the wait began, no log
    clock.now += 10
    waited_since = clock.now
    assert await store.decided_since(sha, waited_since) is None
    await store.save_submission(_new("late"), name="A.zip", sha256=sha, path="/A.zip",
                                issued_at=clock.now)
    assert await store.decided_since(sha, waited_since) is None  # not decided yet
    clock.now += 10
    await store.mark_uploading("late")
    await store.mark_uploaded("late")
    await store.mark_done("late", "Accepted", "/state/logs/late.json")
    decided = await store.decided_since(sha, waited_since)
    assert decided is not None
    assert (decided.submission_id, decided.log_path) == ("late", Path("/state/logs/late.json"))
    assert await store.decided_since("00" * 32, waited_since) is None
