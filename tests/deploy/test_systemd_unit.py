"""The systemd units pass `systemd-analyze verify`, score well on `systemd-analyze security`,
and their MemoryDenyWriteExecute=yes does not break the daemon's Python stack.

`systemd-analyze verify` needs no running systemd, but it checks that ExecStart's binary exists:
the units are rendered pointing at this virtualenv's notaryd. It reports unknown keys and bad
values as warnings with exit status 0, so any output at all counts as a failure here.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from service.emulator.notary import BackgroundEmulator
from service.emulator.sample_app import make_sample_app
from service.install import systemd
from service.install.examples import LINUX_ACCOUNT, example_request
from tests.support.emulator import cli_environment, notarize_command
from uploader.staple.check import CheckOutcome, check_staple

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
HERE = Path(__file__).resolve().parent

pytestmark = [pytest.mark.process, pytest.mark.skipif(sys.platform != "linux", reason="systemd units are Linux-only")]


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.fail("systemd-analyze is missing: run `make system-deps` (Debian package systemd)")
    return found


def this_notaryd() -> str:
    beside_python = Path(sys.executable).parent / "notaryd"
    return str(beside_python) if beside_python.exists() else sys.executable


def verify(unit_text: str, tmp_path: Path, *, user: bool) -> None:
    """Runs `systemd-analyze [--user] verify` on the unit; fails on any diagnostic."""
    unit_dir = tmp_path / ("user" if user else "system")
    unit_dir.mkdir()
    unit_file = unit_dir / "notaryd.service"
    unit_file.write_text(unit_text)
    runtime_dir = tmp_path / "runtime"  # --user needs $XDG_RUNTIME_DIR even offline
    runtime_dir.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime_dir), "SYSTEMD_LOG_COLOR": "0"}
    scope = ["--user"] if user else []
    result = subprocess.run(
        [systemd_analyze(), *scope, "verify", "--man=no", str(unit_file)],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )
    diagnostics = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and diagnostics == "", (
        f"systemd-analyze verify {unit_file}: exit {result.returncode}\n{diagnostics}"
    )


def exposure(unit_text: str, tmp_path: Path) -> float:
    unit_file = tmp_path / "notaryd.service"
    unit_file.write_text(unit_text)
    result = subprocess.run(
        [systemd_analyze(), "security", "--offline=true", "--no-pager", str(unit_file)],
        capture_output=True, text=True, timeout=60, check=True,
    )
    match = re.search(r"Overall exposure level for notaryd\.service: ([0-9.]+)", result.stdout)
    assert match, result.stdout[-500:]
    return float(match.group(1))


def rendered(*, system: bool) -> str:
    request = dataclasses.replace(example_request(LINUX_ACCOUNT, system=system), program=(this_notaryd(),))
    return systemd.render(request)


def committed(relative: str) -> str:
    """A deploy/ unit with its example ExecStart binary swapped for one that exists here."""
    text = (DEPLOY / relative).read_text()
    assert "ExecStart=/usr/local/bin/notaryd serve\n" in text
    return text.replace("ExecStart=/usr/local/bin/notaryd ", f"ExecStart={this_notaryd()} ")


def test_committed_system_unit_verifies(tmp_path: Path) -> None:
    verify(committed("systemd/notaryd.service"), tmp_path, user=False)


def test_committed_user_unit_verifies_in_a_user_manager(tmp_path: Path) -> None:
    verify(committed("systemd/user/notaryd.service"), tmp_path, user=True)


def test_rendered_units_verify(tmp_path: Path) -> None:
    verify(rendered(system=True), tmp_path, user=False)
    verify(rendered(system=False), tmp_path, user=True)


def test_verify_catches_a_misspelt_hardening_option(tmp_path: Path) -> None:
    broken = rendered(system=True).replace("ProtectSystem=strict", "ProtectSytem=strict")
    with pytest.raises(AssertionError, match="Unknown key 'ProtectSytem'"):
        verify(broken, tmp_path, user=False)


def test_system_unit_exposure_is_low(tmp_path: Path) -> None:
    # 0 = fully locked down, 10 = unprotected; systemd labels < 2 "OK". Network access is the job.
    score = exposure(rendered(system=True), tmp_path)
    assert score <= 2.0, f"systemd-analyze security scores the system unit {score}"


def test_memory_deny_write_execute_keeps_the_python_stack_working() -> None:
    """MemoryDenyWriteExecute=yes is only kept because this passes (see mdwe_probe.py)."""
    result = subprocess.run(
        [sys.executable, str(HERE / "mdwe_probe.py")],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stdout + result.stderr


def test_units_wait_for_the_daemons_readiness() -> None:
    """Type=notify: `systemctl start` returns once notaryd says READY=1 (it listens by then)."""
    for unit in (rendered(system=True), rendered(system=False), committed("systemd/notaryd.service")):
        assert "\nType=notify\n" in unit


def sandboxed(unit_text: str, home_root: Path, argv: list[str]) -> list[str]:
    """``argv`` in a mount namespace where ``home_root`` (standing for /home) is what the unit's
    ProtectHome=read-only and ReadWritePaths= make of it: read-only, but for the paths listed."""
    assert "ProtectHome=read-only" in unit_text
    writable = [word.lstrip("-") for line in unit_text.splitlines()
                if line.startswith("ReadWritePaths=")
                for word in line.removeprefix("ReadWritePaths=").split()]
    inside = [Path(p) for p in writable if Path(p).is_relative_to(home_root) and Path(p).exists()]
    script = [f"mount --bind {home_root} {home_root}",
              f"mount -o remount,bind,ro {home_root}"]
    for path in inside:
        script += [f"mount --bind {path} {path}", f"mount -o remount,bind,rw {path}"]
    script.append('exec "$@"')
    return ["unshare", "--mount", "sh", "-ec", " && ".join(script), "sandbox", *argv]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="mount namespaces need root and unshare")
def test_the_system_unit_lets_the_daemon_staple_builds_in_the_allowed_roots(
    notary: BackgroundEmulator, tmp_path: Path
) -> None:
    home_root = tmp_path / "home"  # the unit's /home
    account = dataclasses.replace(LINUX_ACCOUNT, home=home_root / "builder")
    request = dataclasses.replace(example_request(account, system=True), program=(this_notaryd(),))
    unit = systemd.render(request)
    app = make_sample_app(account.home / "builds", "Game")
    key = notary.call(lambda e: e.make_team_key(tmp_path / "keys"))
    env = cli_environment(notary.emulator, key, tmp_path / "client")  # state outside /home
    result = subprocess.run(sandboxed(unit, home_root, notarize_command(app, "--skip-preflight")),
                            env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert check_staple(app).outcome is CheckOutcome.VALID

    # the sandbox is real: outside the ReadWritePaths, home stays read-only
    probe = subprocess.run(sandboxed(unit, home_root, ["touch", str(home_root / "elsewhere")]),
                           capture_output=True, text=True, timeout=30)
    assert probe.returncode != 0 and "Read-only file system" in probe.stderr
