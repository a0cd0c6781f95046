"""Signature verification inside the issue-10 bounds: code read out of a compressed .pkg payload
is copied for random access through the run's spool budget, never past it.

A Mach-O in a gzip payload can only be read forward, yet its signature comes before its pages
are checked, so it is copied (``source.random_access``). Within the budget the pages are
compared; past it the signing facts still come from forward reads and the report says, as a
warning, that the pages (and the bundle's seal) were not compared.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from preflight_builders import Pki, cpio_odc, gzip_bytes, xar
from seal_builders import Bundle, CodeSigning, signed_thin, udif

from uploader.preflight import PreflightReport, run_preflight
from uploader.preflight import messages as msg
from uploader.preflight.limits import DEFAULT_LIMITS


def run(path: Path, pki: Pki, **limits: int) -> PreflightReport:
    return run_preflight(
        path, trust_anchors=[pki.root.cert], limits=replace(DEFAULT_LIMITS, **limits)
    )


def flip(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1 :]


def payload_pkg(tmp_path: Path, files: dict[str, bytes]) -> Path:
    path = tmp_path / "Game.pkg"
    path.write_bytes(xar({"Payload": gzip_bytes(cpio_odc(files))}))
    return path


def messages(report: PreflightReport) -> set[str]:
    return {i.message for i in report.issues}


def test_code_in_a_payload_within_the_spool_has_its_pages_compared(
    tmp_path: Path, pki: Pki, signing: CodeSigning
) -> None:
    binary = signed_thin(signing, code_bytes=40_000).data
    tools = {f"./bin/tool{n}": binary for n in range(3)}
    tools["./bin/tool1"] = flip(binary, 5000)  # page 1
    # Each copy fits the spool, all three together would not: each is released after use.
    report = run(payload_pkg(tmp_path, tools), pki, max_spool_bytes=len(binary) + 1024)
    assert report.macho_files == 3
    invalid = [i for i in report.errors if i.message == msg.INVALID_SIGNATURE]
    assert [i.path for i in invalid] == ["Game.pkg/Payload/bin/tool1"], report.issues
    assert "page 1" in (invalid[0].detail or "")
    assert msg.PAGES_NOT_COMPARED not in messages(report)
    assert msg.CONTAINER_NOT_INSPECTED not in messages(report)


def test_code_larger_than_the_spool_is_checked_forward_and_says_so(
    tmp_path: Path, pki: Pki, signing: CodeSigning
) -> None:
    binary = flip(signed_thin(signing, code_bytes=40_000).data, 5000)
    report = run(payload_pkg(tmp_path, {"./bin/tool": binary}), pki, max_spool_bytes=4096)
    assert report.macho_files == 1
    skipped = [i for i in report.warnings if i.message == msg.PAGES_NOT_COMPARED]
    assert [i.path for i in skipped] == ["Game.pkg/Payload/bin/tool"]
    assert f"{len(binary):,} bytes" in (skipped[0].detail or "")
    assert "4,096 bytes" in (skipped[0].detail or "")
    # Signing facts still come from the forward read: a Developer ID signature passes them.
    assert not report.errors, report.issues


def test_a_bundle_whose_code_was_not_hashed_is_not_judged(
    tmp_path: Path, pki: Pki, signing: CodeSigning
) -> None:
    bundle = Bundle()
    bundle.files["Game.app/Contents/Resources/a.txt"] = b"a"
    bundle.seal("Game.app", "Game", signing)
    files = {f"./Applications/{p}": d for p, d in bundle.files.items() if isinstance(d, bytes)}
    path = payload_pkg(tmp_path, files)

    intact = run(path, pki)
    assert not intact.errors and msg.SEAL_NOT_COMPARED not in messages(intact), intact.issues

    report = run(path, pki, max_spool_bytes=4096)
    assert not report.errors, report.issues  # no false "main executable missing"
    assert msg.SEAL_NOT_COMPARED in messages(report)
    assert msg.PAGES_NOT_COMPARED in messages(report)


def test_a_disk_image_larger_than_the_spool_is_a_warning(
    tmp_path: Path, pki: Pki, signing: CodeSigning
) -> None:
    image = udif({"disk image (Apple_HFS : 4)": [0x80000005]}, signing)
    tool = signed_thin(signing).data
    path = payload_pkg(tmp_path, {"./Game.dmg": image, "./bin/tool": tool})
    inspected = run(path, pki)
    report = run(path, pki, max_spool_bytes=len(image) - 1)
    assert not report.errors, report.issues
    assert [i.detail for i in report.warnings if i.message == msg.DMG_NOT_INSPECTED] == [
        f"{len(image):,} bytes in a compressed stream, more than the {len(image) - 1:,} bytes "
        "preflight may copy to read it twice"
    ]
    assert all("compressed stream" not in (i.detail or "") for i in inspected.issues)


def test_seal_tracking_is_bounded(tmp_path: Path, pki: Pki, signing: CodeSigning) -> None:
    bundle = Bundle()
    for n in range(5):
        bundle.files[f"Game.app/Contents/Resources/{n}.txt"] = b"%d" % n
    bundle.seal("Game.app", "Game", signing)
    path = tmp_path / "Game.zip"
    path.write_bytes(bundle.zip_bytes())
    assert not run(path, pki).issues
    report = run(path, pki, max_seal_records=3)
    assert not report.errors, report.issues
    assert [i.detail for i in report.warnings if i.message == msg.SEAL_NOT_COMPARED] == [
        "more than 3 files to track"
    ]
