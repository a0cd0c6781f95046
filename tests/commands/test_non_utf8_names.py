"""File names that are not UTF-8 (a Latin-1 ``café.zip``): one clear line and exit 1 from every
command that takes a PATH, never ``unexpected error``. (The API's 400 is in tests/daemon/test_api.py,
a bundle member's refusal in tests/upload/test_bundle_swaps.py.)"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from service.cli import main
from service.emulator.auth import TeamKey
from service.emulator.notary import NotaryEmulator
from tests.support.emulator import cli_environment
from tests.support.files import make_archive

REFUSAL = ("the name is not valid UTF-8; rename it (notaryd and the notary service handle only "
           "UTF-8 names)")


async def test_every_path_command_refuses_a_name_that_is_not_utf8(
    emulator: NotaryEmulator, team_key: TeamKey, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in cli_environment(emulator, team_key, tmp_path / "home").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("NOTARYD_CONFIG", "")
    archive = make_archive(tmp_path / os.fsdecode(b"caf\xe9.zip"), 1000)
    for command in (["notarize", "--skip-preflight", str(archive)], ["preflight", str(archive)],
                    ["staple", str(archive)], ["upload", str(archive), "--bucket", "b", "--key", "k"]):
        code = await asyncio.to_thread(main, command)
        err = capsys.readouterr().err
        assert (code, err) == (1, f"notaryd: {tmp_path}/caf\\xe9.zip: {REFUSAL}\n"), command
    assert emulator.submissions == {}
