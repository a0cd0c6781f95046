"""Real Mach-O files built by other toolchains (see tests/fixtures/preflight/README.md)."""

from __future__ import annotations

import zipfile
from pathlib import Path

from uploader.preflight import run_preflight

FIXTURES = Path(__file__).parent.parent / "fixtures" / "preflight"
MARKUPSAFE = FIXTURES / "markupsafe-3.0.2-_speedups-universal2.so"


def test_markupsafe_universal2_extension(tmp_path: Path) -> None:
    """As the notary would see it inside a wheel bundled in an app: x86_64 unsigned, arm64
    linker-signed; a bundle, so the missing runtime is only a warning; SDK is recent."""
    wheel = tmp_path / "Tool.zip"
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.write(
            MARKUPSAFE, "Tool.app/Contents/Resources/markupsafe/_speedups.cpython-311-darwin.so"
        )
    report = run_preflight(wheel)
    path = "Tool.zip/Tool.app/Contents/Resources/markupsafe/_speedups.cpython-311-darwin.so"
    assert {(str(i.severity), i.message, i.architecture, i.path) for i in report.issues} == {
        ("error", "The binary is not signed.", "x86_64", path),
        ("error", "The signature does not include a secure timestamp.", "x86_64", path),
        ("warning", "The executable does not have the hardened runtime enabled.", "x86_64", path),
        ("error", "The binary is not signed with a valid Developer ID certificate.", "arm64", path),
        ("error", "The signature does not include a secure timestamp.", "arm64", path),
        ("warning", "The executable does not have the hardened runtime enabled.", "arm64", path),
    }
    assert report.architecture_slices == 2
