"""What the CLI says before any network: --version, --help, input kinds, messages (in-process)."""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import os
import sys
from pathlib import Path

import pytest

from service.cli import build_parser, configure_logging, main
from service.progress import ProgressDisplay
from tests.support.clocks import ManualClock
from uploader import state_dir
from uploader.artifact import Artifact, UnsupportedInput, for_stapling
from uploader.errors import ConfigError
from uploader.input_lock import input_lock
from uploader.notary.auth import load_api_key
from uploader.redaction import RedactingFilter
from uploader.staple import StapleInputError

AUTHENTICATING = ("notarize", "submit", "status", "log", "history", "wait")


def subcommands(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[f"{prefix}{name}"] = sub
                found.update(subcommands(sub, f"{prefix}{name} "))
    return found


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == "notaryd 0.1.0"


def test_every_command_has_a_description_and_the_authenticating_ones_name_the_key_settings() -> None:
    commands = subcommands(build_parser())
    assert {"notarize", "submit", "status", "log", "history", "wait", "serve", "jobs", "watch",
            "cancel", "staple", "preflight", "doctor"} <= set(commands)
    assert [name for name, parser in commands.items() if not parser.description] == []
    for name in AUTHENTICATING:
        text = " ".join(commands[name].format_help().split())
        for setting in ("NOTARYD_KEY_ID", "NOTARYD_ISSUER_ID", "NOTARYD_PRIVATE_KEY",
                        "environment", "config file"):
            assert setting in text, (name, setting)


def test_the_input_kind_is_decided_in_one_place(tmp_path: Path) -> None:
    (tmp_path / "Game.APP").mkdir()
    (tmp_path / "Build").mkdir()
    for name in ("Game.zip", "Game.PKG", "Game.dmg", "Game.tar.gz", "Game.app.zip"):
        (tmp_path / name).write_bytes(b"x")
    assert Artifact.open(tmp_path / "Game.APP").kind.name == "app"
    assert Artifact.open(tmp_path / "Game.PKG").kind.name == "pkg"
    assert Artifact.open(tmp_path / "Game.app.zip").kind.name == "zip"
    with pytest.raises(UnsupportedInput, match=r"^Game.tar.gz: the notary service does not take "
                                               r"this format; it takes .zip, .pkg and .dmg"):
        Artifact.open(tmp_path / "Game.tar.gz")
    with pytest.raises(UnsupportedInput, match=r"Build is a folder, not a .app bundle"):
        Artifact.open(tmp_path / "Build")
    with pytest.raises(UnsupportedInput, match=r"Gone.zip: no such file or folder"):
        Artifact.open(tmp_path / "Gone.zip")


def test_a_zip_cannot_be_stapled_names_the_app_it_came_from(tmp_path: Path) -> None:
    (tmp_path / "Racer.zip").write_bytes(b"x")
    with pytest.raises(StapleInputError, match=r"\(notaryd staple Racer.app\)"):
        for_stapling(tmp_path / "Racer.zip")


def test_the_not_a_pem_file_message_survives_redaction(tmp_path: Path) -> None:
    key = tmp_path / "AuthKey_ABCDEFGHIJ.p8"
    key.write_text("this is not a key\n")
    key.chmod(0o600)
    with pytest.raises(ConfigError) as error:
        load_api_key(key, key_id="ABCDEFGHIJ", issuer_id="69a6de7e-0000-0000-0000-000000000000")
    record = logging.LogRecord("notaryd", logging.ERROR, __file__, 1, str(error.value), None, None)
    RedactingFilter().filter(record)
    assert record.getMessage() == str(error.value)
    assert record.getMessage().endswith(str(error.value).rsplit(";", 1)[1])  # the fix is kept


def test_zips_of_bundles_are_private_from_the_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from service.emulator.sample_app import make_sample_app
    from uploader.bundle_zip import package_for_submission

    state = tmp_path / "state"
    state_dir.prepare(state)
    old_umask = os.umask(0o022)
    try:
        package_for_submission(make_sample_app(tmp_path / "build", "Game"), state,
                               part_size=5 * 1024 * 1024)
    finally:
        os.umask(old_umask)
    with caplog.at_level(logging.WARNING, logger="notaryd.state"):
        state_dir.prepare(state)  # the next run
    assert "tightened permissions" not in caplog.text


def test_a_second_run_on_the_same_build_waits_for_the_first(tmp_path: Path) -> None:
    clock = ManualClock()
    build = tmp_path / "Game.zip"
    build.write_bytes(b"x")
    told: list[int | None] = []

    async def scenario() -> list[str]:
        order: list[str] = []
        first_holds, second_told = asyncio.Event(), asyncio.Event()

        def busy(pid: int | None) -> None:
            told.append(pid)
            second_told.set()

        async def first() -> None:
            async with input_lock(tmp_path / "state", build, on_busy=told.append):
                first_holds.set()
                await second_told.wait()
                order.append("first done")

        async def second() -> None:
            await first_holds.wait()
            # the same build by another path: the lock is keyed by the resolved path
            async with input_lock(tmp_path / "state", tmp_path / "." / "Game.zip",
                                  on_busy=busy, sleep=clock.sleep):
                order.append("second runs")

        await asyncio.gather(first(), second())
        return order

    assert asyncio.run(scenario()) == ["first done", "second runs"]
    assert told == [os.getpid()]


def test_a_waiting_run_says_so_again_every_minute(tmp_path: Path) -> None:
    """A wait with no end in sight is never announced only once (fake clock: no real minute)."""
    clock = ManualClock()
    build = tmp_path / "Game.zip"
    build.write_bytes(b"x")
    told: list[float] = []

    async def scenario() -> None:
        holding, enough = asyncio.Event(), asyncio.Event()

        def busy(pid: int | None) -> None:
            told.append(clock())
            if len(told) == 3:
                enough.set()

        async def first() -> None:
            async with input_lock(tmp_path / "state", build, on_busy=told.append):
                holding.set()
                await enough.wait()

        async def second() -> None:
            await holding.wait()
            async with input_lock(tmp_path / "state", build, on_busy=busy, sleep=clock.sleep):
                pass

        # bounds the test only: told once and never again would otherwise wait for ever
        await asyncio.wait_for(asyncio.gather(first(), second()), timeout=60)

    asyncio.run(scenario())
    assert [round(at - told[0]) for at in told] == [0, 60, 120]


def test_access_log_lines_never_reach_the_terminal() -> None:
    access = logging.getLogger("aiohttp.access")
    before = access.level
    try:
        configure_logging(verbose=True)
        assert not access.isEnabledFor(logging.INFO)
    finally:
        access.setLevel(before)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_records_go_through_the_bars_console() -> None:
    terminal = _Terminal()
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    root.addHandler(handler)
    try:
        with ProgressDisplay(terminal) as display:
            assert handler not in root.handlers  # routed through the bar meanwhile
            logging.getLogger("uploader.engine").warning("part 3 failed; retrying")
            display.message("notaryd: after the record")
        assert handler in root.handlers
    finally:
        root.removeHandler(handler)
    lines = terminal.getvalue().splitlines()
    assert any(line.rstrip().endswith("WARNING part 3 failed; retrying") for line in lines)
