"""Each package's schema, versioned per package; databases of the first release open and keep
every row (built here with that release's SQL, frozen in tests/fixtures/released_schema.py)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from service.daemon import migrations as daemon_migrations
from service.daemon.job_options import JobOptions
from service.daemon.job_store import JobStore
from tests.fixtures.released_schema import RELEASED_MIGRATIONS
from uploader.credentials import Credentials
from uploader.database import Database
from uploader.hashing import ChecksumAlgorithm
from uploader.lifecycle import SubmissionState, UploadState
from uploader.migrations import SCHEMA
from uploader.notary.store import SubmissionStore
from uploader.schema import LAYOUT, RELEASED, Schema
from uploader.upload_state import UploadStore

USERS_OWN_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # `notaryd upload` stored it
ISSUED_SECRET = "c2VjcmV0LWlzc3VlZC1ieS10aGUtbm90YXJ5LXNlcnZpY2U="
ISSUED_TOKEN = "dG9rZW4taXNzdWVkLWJ5LXRoZS1ub3Rhcnktc2VydmljZQ=="
SUBMISSION = "2efe2717-52ef-43a5-96dc-0797e4ca1041"
CURRENT = {"uploader": SCHEMA.version, "service.daemon": daemon_migrations.SCHEMA.version}


def released_database(path: Path, version: int) -> None:
    """A state database as the first release left it at ``version``, with a row in every table:
    a plain upload and a notarisation's upload (each with its credentials), their parts, an
    answered and a dangling intent, the submission, and a daemon job."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for number, script in enumerate(RELEASED_MIGRATIONS[:version], start=1):
            conn.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
        for upload_id, key_id, secret, token in ((1, "AKIAUSER", USERS_OWN_SECRET, None),
                                                 (2, "ASIAISSUED", ISSUED_SECRET, ISSUED_TOKEN)):
            conn.execute(
                "INSERT INTO uploads (id, path, size, mtime_ns, inode, sha256, bucket, key,"
                " endpoint, part_size, checksum_algorithm, full_checksum, s3_upload_id,"
                " access_key_id, secret_access_key, session_token, credentials_expire_at, state,"
                " created_at, updated_at) VALUES (?, '/b/Game.zip', 12, 7, 42, 'ab', 'bucket',"
                " ?, '', 8, 'CRC64NVME', NULL, 'mpu-1', ?, ?, ?, 1700043200, 'uploading', 1, 2)",
                (upload_id, f"key-{upload_id}", key_id, secret, token))
            conn.executemany(
                "INSERT INTO parts (upload_id, number, offset, length, checksum, etag, state,"
                " attempts) VALUES (?, ?, ?, ?, 'c', ?, ?, ?)",
                [(upload_id, 1, 0, 8, '"e1"', "done", 1), (upload_id, 2, 8, 4, None, "pending", 2)])
        conn.execute("INSERT INTO submission_intents (name, sha256, path, started_at,"
                     " submission_id) VALUES ('Game.zip', 'ab', '/b/Game.zip', 1, ?)",
                     (SUBMISSION,))
        conn.execute("INSERT INTO submission_intents (name, sha256, path, started_at)"
                     " VALUES ('Game.zip', 'ab', '/b/Game.zip', 3)")
        conn.execute(
            "INSERT INTO submissions (id, name, sha256, path, bucket, object, access_key_id,"
            " secret_access_key, session_token, credentials_issued_at, credentials_expire_at,"
            " state, notary_status, log_path, webhook, created_at, updated_at) VALUES (?,"
            " 'Game.zip', 'ab', '/b/Game.zip', 'bucket', 'key-2', 'ASIAISSUED', ?, ?, 1,"
            " 1700043200, 'uploading', 'In Progress', '/s/logs/x.json', 'https://hook', 1, 2)",
            (SUBMISSION, ISSUED_SECRET, ISSUED_TOKEN))
        conn.execute("INSERT INTO jobs (id, path, name, state, submission_id, bytes_total,"
                     " bytes_done, created_at, updated_at) VALUES ('job1', '/b/Game.zip',"
                     " 'Game.zip', 'uploading', ?, 12, 8, 1, 2)", (SUBMISSION,))
        if version >= 3:
            conn.execute("UPDATE jobs SET options = ?",
                         (JobOptions(staple=False, force=True, keep_archive=True).to_db(),))
    finally:
        conn.close()


@pytest.mark.parametrize("version", [1, 2, 3])
async def test_a_first_release_database_opens_and_keeps_every_row(
    tmp_path: Path, version: int
) -> None:
    path = tmp_path / "state" / "notaryd.sqlite3"
    released_database(path, version)

    # `notaryd notarize` (the library alone) opens it first; the daemon's table waits for it
    db = await Database.open(path)
    try:
        assert await db.schema_versions() == {RELEASED: version, "uploader": SCHEMA.version}
        uploads = UploadStore(db)
        for upload_id in (1, 2):
            record = await uploads.get(upload_id)
            assert (record.s3_upload_id, record.state, record.key) == (
                "mpu-1", UploadState.UPLOADING, f"key-{upload_id}")
            assert record.algorithm is record.requested_algorithm is ChecksumAlgorithm.CRC64NVME
            parts = await uploads.parts(upload_id)
            assert [(p.number, p.etag, p.done, p.attempts) for p in parts] == [
                (1, '"e1"', True, 1), (2, None, False, 2)]
        submissions = SubmissionStore(db)
        submission = await submissions.get(SUBMISSION)
        assert submission is not None
        assert submission.credentials == Credentials("ASIAISSUED", ISSUED_SECRET, ISSUED_TOKEN,
                                                     1_700_043_200.0)
        assert (submission.state, submission.notary_status, submission.webhook) == (
            SubmissionState.UPLOADING, "In Progress", "https://hook")
        assert [i.started_at for i in await submissions.dangling_intents()] == [3.0]
        columns = {row["name"] for row in await db.fetchall("PRAGMA table_info(uploads)")}
        assert not columns & {"access_key_id", "secret_access_key", "session_token"}
    finally:
        await db.close()

    db = await Database.open(path)  # the daemon, later
    try:
        job = await (await JobStore.open(db)).get("job1")
        assert job is not None
        assert (job.submission_id, job.progress.bytes_done, job.name) == (SUBMISSION, 8, "Game.zip")
        expected = (JobOptions(staple=False, force=True, keep_archive=True) if version >= 3
                    else JobOptions())
        assert job.options == expected
        assert await (await JobStore.open(db)).log_path(SUBMISSION) == Path("/s/logs/x.json")
        assert await db.schema_versions() == {RELEASED: version, **CURRENT}
    finally:
        await db.close()
    # the user's own AWS secret is gone from the file; the issued one stays with its submission
    stored = path.read_bytes()
    assert USERS_OWN_SECRET.encode() not in stored
    assert stored.count(ISSUED_SECRET.encode()) == 1
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (LAYOUT,)


async def test_two_processes_opening_an_old_database_at_once_migrate_it_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state" / "notaryd.sqlite3"
    released_database(path, 2)
    first, second = await asyncio.gather(Database.open(path), Database.open(path))
    try:
        await asyncio.gather(JobStore.open(first), JobStore.open(second))
        assert await first.schema_versions() == {RELEASED: 2, **CURRENT}
        assert len(await UploadStore(second).parts(1)) == 2
    finally:
        await first.close()
        await second.close()


async def test_a_new_database_gets_the_daemons_table_on_its_stores_first_use(
    tmp_path: Path,
) -> None:
    db = await Database.open(tmp_path / "notaryd.sqlite3")
    try:
        tables = "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'jobs'"
        assert await db.fetchone(tables) is None  # the library does not create it
        assert await (await JobStore.open(db)).recent() == []
        assert await db.fetchone(tables) is not None
        assert await db.schema_versions() == CURRENT
    finally:
        await db.close()


async def test_a_failing_migration_leaves_its_package_at_the_old_version(tmp_path: Path) -> None:
    path = tmp_path / "notaryd.sqlite3"
    first = Schema("test.package", ("CREATE TABLE a (x)",))
    second = Schema("test.package", (*first.migrations,
                                     "CREATE TABLE b (x); INSERT INTO nowhere VALUES (1)"))
    db = await Database.open(path)
    await db.require(first)
    await db.close()
    db = await Database.open(path)  # a newer notaryd, whose migration 2 fails half-way
    try:
        with pytest.raises(sqlite3.OperationalError, match="nowhere"):
            await db.require(second)
        assert (await db.schema_versions())["test.package"] == 1
        assert await db.fetchone("SELECT name FROM sqlite_master WHERE name = 'b'") is None
        await db.execute("INSERT INTO a VALUES (1)")  # no transaction was left open
    finally:
        await db.close()
