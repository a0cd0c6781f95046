"""The README's quick start as a new user runs it: `python -m service.emulator` in the background,
its printed settings sourced, `notaryd notarize` of a .app that then carries its ticket; and
`notaryd demo`, whose point is the upload, uploads its assets' bytes."""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from service.emulator.sample_app import make_sample_app
from tests.support.waiting import until
from uploader.staple.check import CheckOutcome, check_staple

pytestmark = pytest.mark.process

MiB = 1024 * 1024


def exports(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            found[name] = shlex.split(value)[0]
    return found


def test_the_emulator_prints_every_setting_a_notarize_with_staple_needs(tmp_path: Path) -> None:
    settings_file = tmp_path / "notary.env"
    with open(settings_file, "wb") as out:
        emulator = subprocess.Popen(
            [sys.executable, "-m", "service.emulator", "--key-dir", str(tmp_path / "keys"),
             "--processing-delay", "0.5"], stdout=out, stderr=subprocess.PIPE)
    try:
        until(lambda: "NOTARYD_PRIVATE_KEY" in settings_file.read_text()
              or emulator.poll() is not None, within=60, what="the emulator's settings")
        settings = exports(settings_file.read_text())
        assert "NOTARYD_TICKET_URL" in settings, settings
        app = make_sample_app(tmp_path / "build", "Game")
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **settings}
        result = subprocess.run(
            [sys.executable, "-m", "service", "notarize", str(app), "--skip-preflight"],
            env=env, capture_output=True, text=True, timeout=180)
        assert result.returncode == 0, result.stdout + result.stderr
        assert check_staple(app).outcome is CheckOutcome.VALID
    finally:
        emulator.send_signal(signal.SIGINT)
        try:
            emulator.wait(60)
        finally:
            if emulator.poll() is None:
                emulator.kill()
                emulator.wait()
            assert emulator.stderr is not None
            emulator.stderr.close()


def test_the_demo_uploads_its_assets_by_default(tmp_path: Path) -> None:
    size = 6 * MiB
    result = subprocess.run(
        [sys.executable, "-m", "service", "demo", "--size", "6M", "--workdir", str(tmp_path)],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, capture_output=True, text=True,
        timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    found = re.search(r"^\s*notaryd_upload_bytes_total (\S+)$", result.stdout + result.stderr,
                      re.MULTILINE)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) >= size  # incompressible: the zip is no smaller than the assets


@pytest.mark.unit
@pytest.mark.parametrize("size", ["1G", "2G", "8G", "25G"])
def test_the_emulator_tickets_builds_as_large_as_the_demo_and_studios_make(size: str) -> None:
    """`make demo` makes 1 GiB, `notaryd demo` 2 GiB by default, the Makefile suggests 8 GiB,
    and studios ship up to 25 GB: each must end stapled, not wait 30 minutes for a ticket the
    emulator declined to issue (it once scanned only archives up to 512 MiB)."""
    from service.commands.demo import parse_size
    from service.emulator.tickets import TicketDesk

    assert TicketDesk(clock=lambda: 0.0).scan_limit_bytes >= parse_size(size)
