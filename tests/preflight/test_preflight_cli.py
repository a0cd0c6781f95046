"""`notaryd preflight` through the real console script: output and exit codes 0 / 2 / 1."""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path

import pytest
from preflight_builders import CPU_X86_64, CS_RUNTIME, MH_DYLIB, SliceSpec, thin_macho, zip_bytes

from tests.support.daemon import notaryd as installed_notaryd

pytestmark = pytest.mark.process


def notaryd(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NOTARYD_STATE_DIR": str(tmp_path / "state")}
    return subprocess.run(
        [installed_notaryd(), "preflight", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_errors_exit_2_and_name_the_file(tmp_path: Path) -> None:
    archive = tmp_path / "Game.zip"
    archive.write_bytes(
        zip_bytes(
            {
                "Game.app/Contents/Frameworks/libfoo.dylib": thin_macho(
                    SliceSpec(cputype=CPU_X86_64, filetype=MH_DYLIB)
                )
            },
            compression=zipfile.ZIP_DEFLATED,
        )
    )
    text = notaryd(str(archive), tmp_path=tmp_path)
    assert text.returncode == 2, text.stderr
    assert "preflight FAIL" in text.stdout
    assert "Game.zip/Game.app/Contents/Frameworks/libfoo.dylib" in text.stdout
    assert "The binary is not signed." in text.stdout

    as_json = notaryd(str(archive), "--json", tmp_path=tmp_path)
    assert as_json.returncode == 2
    log = json.loads(as_json.stdout)
    assert log["status"] == "Invalid"
    assert {(i["message"], i["architecture"], i["severity"]) for i in log["issues"]} == {
        ("The binary is not signed.", "x86_64", "error"),
        ("The signature does not include a secure timestamp.", "x86_64", "error"),
        ("The executable does not have the hardened runtime enabled.", "x86_64", "warning"),
    }
    assert set(log["issues"][0]) >= {
        "severity",
        "code",
        "path",
        "message",
        "docUrl",
        "architecture",
    }


def test_clean_exits_0_and_warnings_do_not_fail(tmp_path: Path) -> None:
    # Only warnings: a .dmg is reported as not inspected, which is not an error.
    image = tmp_path / "Game.dmg"
    image.write_bytes(b"\x00" * 1024 + b"koly" + b"\x00" * 508)
    result = notaryd(str(image), "--json", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    log = json.loads(result.stdout)
    assert log["status"] == "Accepted"
    assert [i["severity"] for i in log["issues"]] == ["warning"]


def test_missing_path_exits_1_with_one_line(tmp_path: Path) -> None:
    result = notaryd(str(tmp_path / "missing.zip"), tmp_path=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "missing.zip" in lines[0] and "no such file" in lines[0]


def test_ad_hoc_signed_executable_exit_2(tmp_path: Path) -> None:
    from preflight_builders import CS_ADHOC, Signing

    exe = tmp_path / "tool"
    exe.write_bytes(thin_macho(SliceSpec(signing=Signing(flags=CS_ADHOC | CS_RUNTIME))))
    result = notaryd(str(exe), tmp_path=tmp_path)
    assert result.returncode == 2
    assert "The binary is not signed with a valid Developer ID certificate." in result.stdout
