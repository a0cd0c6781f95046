"""`notaryd preflight` on full-size hostile inputs, in a real child process, at default limits.

The issue 10 bar: no traceback, a non-zero exit when the archive could not be fully inspected,
under 400 MiB peak RSS and 100 MiB of temp space. Peak RSS is the child's ``VmHWM`` (its own
address space's high-water mark; ``ru_maxrss`` from ``os.wait4`` would also count the pytest
process it was forked from, which Linux carries across exec). Temp space is what the child
wrote to files (``wchar`` from ``/proc/self/io`` minus what it printed), an upper bound on what
it can have held in its private TMPDIR. Wall
time is recorded for the report (the terminal summary lists every run's figures, see
tests/preflight/conftest.py) but not asserted: timing targets belong in benchmarks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hostile_inputs import (
    HOSTILE_FIGURES,
    bundle_of_many_files,
    bundles_with_giant_seals,
    cpio_giant_name,
    deflated_zip_bomb,
    macho_with_signature_of,
    nested_stored_zips,
    pbzx_claiming,
    pbzx_inflating,
    pkg_with_payload,
    toc_bomb_pkg,
    xar_with_toc,
    zip_with_bad_member_offset,
    zip_with_unknown_compression,
)
from preflight_builders import gzip_bytes, zip_bytes

pytestmark = pytest.mark.process

MiB = 1 << 20
MAX_RSS, MAX_TEMP = 400 * MiB, 100 * MiB

# Runs the same entry point as the `notaryd` console script, then reports its own file writes.
CHILD = """
import sys
from service.cli import main

try:
    code = main(sys.argv[1:])
finally:
    sys.stdout.flush()
    io = dict(line.split(": ") for line in open("/proc/self/io").read().splitlines())
    status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
    hwm = int(status["VmHWM"].split()[0])
    sys.stderr.write("\\nwchar=" + io["wchar"] + " hwm_kib=" + str(hwm) + "\\n")
sys.exit(code)
"""

HOSTILE: dict[str, Callable[[], bytes]] = {
    # name on disk: builder. Sizes are what preflight before issue 10 could not bear (it peaked
    # at 0.8-1.6 GB or spooled 256 MiB); the fixes stop each far earlier, whatever the size.
    "toc-bomb.pkg": lambda: toc_bomb_pkg(inflated_mib=256),
    "pbzx-chunk-bomb.pkg": lambda: pkg_with_payload(pbzx_inflating(inflated_mib=256)),
    "pbzx-chunk-claim.pkg": lambda: pkg_with_payload(pbzx_claiming(1 << 40)),
    "cpio-giant-name.pkg": lambda: pkg_with_payload(gzip_bytes(cpio_giant_name())),
    "deflated-zip-in-zip.zip": lambda: deflated_zip_bomb(inner_mib=256),
    "nested-deflated-zips.zip": lambda: deflated_zip_bomb(inner_mib=128, layers=3),
    "400-nested-zips.zip": lambda: nested_stored_zips(400),
    "huge-signature.zip": lambda: zip_bytes(
        {"Game.app/Contents/MacOS/Game": macho_with_signature_of(64 * MiB)}, compression=8
    ),
    "bad-member-offset.zip": zip_with_bad_member_offset,
    "unknown-compression.zip": zip_with_unknown_compression,
    "malformed-toc.pkg": lambda: xar_with_toc(b"<xar><toc><file><name>a"),
    # Signature verification (issue 13): what seals make preflight remember and parse.
    "bundle-of-many-files.pkg": lambda: pkg_with_payload(bundle_of_many_files(600_000)),
    "giant-seals.zip": lambda: bundles_with_giant_seals(bundles=8, seal_mib=15),
    "malformed-toc-in.zip": lambda: zip_bytes(
        {"Installer.pkg": xar_with_toc(b"<xar><toc></xar>")}, compression=8
    ),
}


@dataclass
class Run:
    exit_code: int
    stdout: str
    stderr: str
    rss: int
    temp: int
    seconds: float


def run_child(path: Path, tmp: Path) -> Run:
    tmpdir = tmp / "tmp"
    tmpdir.mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmpdir), "NOTARYD_STATE_DIR": str(tmp / "state")}
    out_path, err_path = tmp / "stdout", tmp / "stderr"
    started = time.monotonic()
    with out_path.open("wb") as out, err_path.open("wb") as err:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, "preflight", str(path)], stdout=out, stderr=err, env=env
        )
    deadline = started + 120  # a hang guard, not a timing target
    while True:
        pid, status = os.waitpid(child.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            child.kill()
            os.waitpid(child.pid, 0)
            pytest.fail(f"preflight {path.name} still running after 120 s")
        time.sleep(0.05)
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - started
    stdout = out_path.read_bytes()
    stderr = err_path.read_text("utf-8", "replace")
    figures = dict(f.split("=") for f in ("wchar=" + stderr.rsplit("\nwchar=", 1)[1]).split())
    return Run(
        child.returncode,
        stdout.decode("utf-8", "replace"),
        stderr,
        int(figures["hwm_kib"]) * 1024,
        int(figures["wchar"]) - len(stdout),
        seconds,
    )


@pytest.fixture(scope="module")
def hostile_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hostile")
    for name, build in HOSTILE.items():
        (folder / name).write_bytes(build())
    return folder


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_input_is_bounded_and_never_passes(
    name: str, hostile_files: Path, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    path = hostile_files / name
    run = run_child(path, tmp_path)
    record_property(HOSTILE_FIGURES, (
        f"{name:26} {path.stat().st_size / 1024:9.1f} KiB  exit {run.exit_code}  {run.seconds:5.2f} s  "
        f"RSS {run.rss / MiB:6.1f} MiB  temp {run.temp / MiB:6.2f} MiB"
    ))
    assert "Traceback" not in run.stderr, run.stderr
    assert run.exit_code in (1, 2), run.stdout + run.stderr
    if run.exit_code == 2:
        assert "preflight FAIL" in run.stdout
    else:  # the top-level archive itself is unreadable: one line saying so
        [line] = run.stderr.split("\nwchar=")[0].strip().splitlines()
        assert line.startswith(f"notaryd: {path}")
    assert run.rss < MAX_RSS, f"peak RSS {run.rss / MiB:.0f} MiB"
    assert run.temp < MAX_TEMP, f"wrote {run.temp / MiB:.0f} MiB"

