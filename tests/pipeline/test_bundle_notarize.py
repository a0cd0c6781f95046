"""A signed .app notarised end to end against the emulator comes back stapled.

Real SeaweedFS behind the emulator's S3 front, real HTTP, a real SQLite state; the zip that
reached S3 is read back from the bucket and compared with the bundle it was made from.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import stat
import zipfile
import zlib
from pathlib import Path

from service.emulator.notary import NotaryEmulator
from service.emulator.sample_app import make_sample_app
from tests.support.cdhash import record_name_of_app
from tests.support.notary import notarize, stapling_config
from uploader.database import Database
from uploader.notary.pipeline import NotarizeRequest, NotaryConfig
from uploader.staple.check import CheckOutcome, check_staple

BIG = 4 * 1024**3 + 100 * 1024**2  # 4.1 GiB: over the 4 GiB ZIP64 limit


async def download(emulator: NotaryEmulator, submission_id: str, to: Path) -> Path:
    submission = emulator.submissions[submission_id]
    chunks = [chunk async for chunk in
              emulator.s3.read_object(emulator.config.bucket, submission.object)]
    await asyncio.to_thread(to.write_bytes, b"".join(chunks))  # a few MiB: the data deflated
    return to


async def test_bundle_with_big_sparse_file_and_symlink_comes_back_stapled(
    emulator: NotaryEmulator, notary_config: NotaryConfig, db: Database, tmp_path: Path
) -> None:
    app = make_sample_app(tmp_path / "build", "Game", big_file_bytes=BIG)
    emulator.tickets.propagation_seconds = 1.5  # the first lookups answer NOT_FOUND
    config = stapling_config(notary_config, emulator)

    outcome = await notarize(db, config, NotarizeRequest(app, skip_preflight=True, keep_archive=True))

    assert outcome.status == "Accepted"
    assert outcome.staple is not None and not outcome.staple.failed, outcome.staple
    expected = record_name_of_app(app)  # decoded by hand, apart from client and emulator
    answers = [answer for name, answer in emulator.tickets.answers if name == expected]
    assert answers[0] == "NOT_FOUND" and answers[-1] == "ticket"
    ticket = (app / "Contents" / "CodeResources").read_bytes()
    assert ticket == emulator.tickets.ticket_for(expected)
    listed = emulator.submissions[outcome.submission_id or ""].log or {}
    assert [entry["cdhash"] for entry in listed["ticketContents"]] == [expected[-40:]]
    assert check_staple(app).outcome is CheckOutcome.VALID

    # The zip in S3 unpacks to the same tree: names, modes, symlinks, contents.
    got = await download(emulator, outcome.submission_id or "", tmp_path / "from-s3.zip")
    with zipfile.ZipFile(got) as archive:
        members = {info.filename: info for info in archive.infolist()}
        expected = {"Game.app/"}
        for root, dirs, files in os.walk(app):
            for name in dirs + files:
                full = Path(root) / name
                relative = "Game.app/" + str(full.relative_to(app))
                if full.name == "CodeResources":
                    continue  # written by stapling, after the upload
                expected.add(relative + ("/" if full.is_dir() and not full.is_symlink() else ""))
        assert set(members) == expected
        for name, info in members.items():
            source = app.parent / name.rstrip("/")
            mode = os.lstat(source).st_mode
            assert info.external_attr >> 16 == mode, name
            if stat.S_ISLNK(mode):
                assert archive.read(info) == os.fsencode(os.readlink(source))
            elif stat.S_ISREG(mode) and info.file_size < 1 << 20:
                assert archive.read(info) == source.read_bytes()
        big = members["Game.app/Contents/Resources/assets.pak"]
        assert big.file_size == BIG and big.extra[:2] == b"\x01\x00"  # ZIP64 extra field
        crc, zeros, left = 0, bytes(8 << 20), BIG
        while left:
            n = min(left, len(zeros))
            crc = zlib.crc32(zeros[:n], crc)
            left -= n
        assert crc == big.CRC
        with archive.open(big) as member:  # inflates it all, checking the CRC at the end
            while member.read(8 << 20):
                pass


async def test_rerun_of_accepted_bundle_makes_no_new_submission_unless_forced(
    emulator: NotaryEmulator, stapling: NotaryConfig, db: Database, tmp_path: Path
) -> None:
    app = make_sample_app(tmp_path / "build", "Small")

    first = await notarize(db, stapling, NotarizeRequest(app, skip_preflight=True, staple=False))
    assert first.accepted and emulator.submissions_created == 1
    archives = stapling.state_dir / "archives"
    assert not any(archives.iterdir())  # the zip is removed once the job ends

    again = await notarize(db, stapling, NotarizeRequest(app, skip_preflight=True))
    assert again.accepted and again.submission_id == first.submission_id
    assert "not submitted again" in again.report
    assert emulator.submissions_created == 1
    assert again.staple is not None and not again.staple.failed  # the stored verdict is stapled

    forced = await notarize(db, stapling, NotarizeRequest(app, skip_preflight=True, force=True,
                                                   staple=False))
    assert forced.accepted and forced.submission_id != first.submission_id
    assert emulator.submissions_created == 2


async def test_zip_input_is_accepted_but_says_zips_cannot_be_stapled(
    emulator: NotaryEmulator, notary_config: NotaryConfig, db: Database, tmp_path: Path
) -> None:
    app = make_sample_app(tmp_path / "build", "Zipped")
    archive = tmp_path / "Zipped.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for root, _, files in os.walk(app):
            for name in files:
                full = Path(root) / name
                z.write(full, str(full.relative_to(app.parent)))
    outcome = await notarize(db, stapling_config(notary_config, emulator),
                        NotarizeRequest(archive, skip_preflight=True))
    assert outcome.accepted
    assert outcome.staple is not None and "cannot be stapled" in outcome.staple.text


async def test_accepted_but_ticket_not_yet_published_says_to_staple_later(
    emulator: NotaryEmulator, notary_config: NotaryConfig, db: Database, tmp_path: Path
) -> None:
    app = make_sample_app(tmp_path / "build", "Late")
    emulator.tickets.propagation_seconds = 3600
    config = dataclasses.replace(stapling_config(notary_config, emulator), staple_max_wait_seconds=0)
    outcome = await notarize(db, config, NotarizeRequest(app, skip_preflight=True))
    assert outcome.accepted
    assert outcome.staple is not None and outcome.staple.failed
    assert "accepted but not stapled" in outcome.staple.text
    assert "run notaryd staple again later" in outcome.staple.text
    assert not (app / "Contents" / "CodeResources").exists()


async def test_a_second_run_continues_the_same_submission(
    emulator: NotaryEmulator, notary_config: NotaryConfig, db: Database, tmp_path: Path
) -> None:
    app = make_sample_app(tmp_path / "build", "Again")
    config = stapling_config(notary_config, emulator)
    first = await notarize(db, config, NotarizeRequest(app, skip_preflight=True, wait=False))
    assert first.status == "In Progress"
    assert not any((config.state_dir / "archives").iterdir())  # the zip went with the job
    # The same tree zips to the same bytes, so the re-run finds its submission by SHA-256.
    second = await notarize(db, config, NotarizeRequest(app, skip_preflight=True, staple=False))
    assert second.accepted and second.submission_id == first.submission_id
    assert emulator.submissions_created == 1
