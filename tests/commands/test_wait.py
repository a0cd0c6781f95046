"""`notaryd wait SUBMISSION_ID`: follows any submission to its verdict (exit codes as notarize)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from service.cli import main
from service.emulator.auth import TeamKey
from service.emulator.notary import NotaryEmulator
from service.emulator.verdicts import INVALID_MARKER
from tests.support.files import PART, make_archive
from uploader.database import Database
from uploader.notary.pipeline import Notarizer, NotarizeRequest, NotaryConfig


@pytest.fixture
def cli_env(emulator: NotaryEmulator, team_key: TeamKey, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTARYD_CONFIG", "")
    monkeypatch.setenv("HOME", str(tmp_path))
    for name, value in (("KEY_ID", team_key.key_id), ("ISSUER_ID", team_key.issuer_id),
                        ("PRIVATE_KEY", str(team_key.path)), ("API_URL", emulator.api_url),
                        ("STATE_DIR", str(tmp_path / "cli-state")), ("POLL_INITIAL", "0.1"),
                        ("POLL_MAX", "0.3")):
        monkeypatch.setenv(f"NOTARYD_{name}", value)


async def submit_only(db: Database, config: NotaryConfig, archive: Path) -> str:
    notarizer = Notarizer(db, config)
    try:
        outcome = await notarizer.run(NotarizeRequest(archive, wait=False, skip_preflight=True))
    finally:
        await notarizer.close()
    assert outcome.submission_id is not None
    return outcome.submission_id


@pytest.mark.usefixtures("cli_env")
async def test_wait_reports_accepted_and_invalid_with_their_exit_codes(
    emulator: NotaryEmulator, notary_config: NotaryConfig, db: Database, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    good = await submit_only(db, notary_config, make_archive(tmp_path / "Good.zip", PART))
    bad = await submit_only(db, notary_config,
                            make_archive(tmp_path / "Bad.zip", PART, marker=INVALID_MARKER))
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["wait", good, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "Accepted"
    assert await asyncio.to_thread(main, ["wait", bad.upper()]) == 2
    assert "Invalid" in capsys.readouterr().out


@pytest.mark.usefixtures("cli_env")
async def test_wait_gives_up_at_its_timeout_with_advice(
    emulator: NotaryEmulator, notary_config: NotaryConfig, db: Database, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    emulator.faults.stuck_next = 1
    stuck = await submit_only(db, notary_config, make_archive(tmp_path / "Stuck.zip", PART))
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["wait", stuck, "--timeout", "0.5"]) == 1
    err = capsys.readouterr().err
    assert "still in progress after 0.5 s" in err and f"notaryd wait {stuck}" in err
    emulator.release(stuck)
    assert await asyncio.to_thread(main, ["wait", stuck]) == 0
