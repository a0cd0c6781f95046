"""Disk images: the image's own signature is checked; what is not read is named, never passed."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from preflight_builders import Pki, zip_bytes
from seal_builders import CodeSigning, udif

from uploader.preflight import PreflightReport
from uploader.preflight import messages as msg

Run = Callable[[Path], PreflightReport]
ZLIB, RAW, ZERO, LZFSE = 0x80000005, 1, 0, 0x80000007
PARTITIONS = {
    "Protective Master Boot Record (MBR : 0)": [ZLIB],
    "disk image (Apple_HFS : 4)": [ZLIB, ZLIB, RAW, ZERO, LZFSE],
}
NOT_READ = (
    "the HFS+/APFS file systems inside were not read (no well-kept library reads them), so no "
    "code inside was checked; partitions: Protective Master Boot Record (MBR : 0) (1 zlib chunk);"
    " disk image (Apple_HFS : 4) (1 LZFSE chunk, 1 raw chunk, 1 zero-fill chunk, 2 zlib chunks)"
)


def findings(report: PreflightReport) -> list[tuple[str, str, str | None]]:
    return [(str(i.severity), i.message, i.detail) for i in report.issues]


def test_signed_image_names_what_was_not_read(
    tmp_path: Path, preflight: Run, signing: CodeSigning
) -> None:
    image = tmp_path / "Game.dmg"
    image.write_bytes(udif(PARTITIONS, signing))
    assert findings(preflight(image)) == [("warning", msg.DMG_NOT_INSPECTED, NOT_READ)]


def test_unsigned_image_says_so(tmp_path: Path, preflight: Run) -> None:
    image = tmp_path / "Game.dmg"
    image.write_bytes(udif(PARTITIONS, None))
    [(severity, message, detail)] = findings(preflight(image))
    assert (severity, message) == ("warning", msg.DMG_NOT_INSPECTED)
    assert detail == NOT_READ + "; the image itself is not signed, so it cannot be stapled"


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_image_changed_after_signing(
    tmp_path: Path, preflight: Run, signing: CodeSigning, compression: int
) -> None:
    data = bytearray(udif(PARTITIONS, signing))
    data[5000] ^= 0xFF  # inside the data fork: page 1
    archive = tmp_path / "Release.zip"
    archive.write_bytes(zip_bytes({"Game.dmg": bytes(data)}, compression=compression))
    found = findings(preflight(archive))
    assert found[0][:2] == ("error", msg.INVALID_SIGNATURE)
    assert (found[0][2] or "").startswith("disk image signature: page 1 (bytes 4096-8191)")
    assert found[1] == ("warning", msg.DMG_NOT_INSPECTED, NOT_READ)


def test_image_hashed_as_one_page(tmp_path: Path, preflight: Run, signing: CodeSigning) -> None:
    """A CodeDirectory page size of 0 means one page up to the code limit: hashed across reads
    (3 MiB here), never read whole."""
    fork = bytes(3 << 20)
    image = tmp_path / "Game.dmg"
    image.write_bytes(udif(PARTITIONS, signing, data=fork, page_shift=0))
    assert [m for _, m, _ in findings(preflight(image))] == [msg.DMG_NOT_INSPECTED]
    data = bytearray(image.read_bytes())
    data[(2 << 20) + 7] = 1
    image.write_bytes(bytes(data))
    found = findings(preflight(image))
    assert found[0] == (
        "error",
        msg.INVALID_SIGNATURE,
        f"disk image signature: page 0 (bytes 0-{len(fork) + found_plist_length(data) - 1}) "
        "of 1 no longer match the SHA-256 CodeDirectory: the code was changed after signing",
    )


def found_plist_length(image: bytearray) -> int:
    return int.from_bytes(image[-512 + 224 : -512 + 232], "big")


def test_image_signed_with_another_certificate(tmp_path: Path, preflight: Run, pki: Pki) -> None:
    image = tmp_path / "Game.dmg"
    image.write_bytes(
        udif(
            PARTITIONS,
            CodeSigning(identity=pki.apple_development_leaf, chain=[pki.developer_id_ca.cert]),
        )
    )
    found = findings(preflight(image))
    assert [(s, m) for s, m, _ in found] == [
        ("error", msg.NOT_DEVELOPER_ID),
        ("warning", msg.DMG_NOT_INSPECTED),
    ]


def test_damaged_trailer_is_a_finding_not_a_crash(tmp_path: Path, preflight: Run) -> None:
    data = bytearray(udif(PARTITIONS, None))
    data[-512 + 216 : -512 + 232] = b"\xff" * 16  # plist offset and length
    data[-512 + 296 : -512 + 312] = b"\x7f" * 16  # signature offset and size
    image = tmp_path / "Game.dmg"
    image.write_bytes(bytes(data))
    found = findings(preflight(image))
    assert found[0][:2] == ("error", msg.INVALID_SIGNATURE)
    assert found[-1] == (
        "warning",
        msg.DMG_NOT_INSPECTED,
        "its partition table could not be read, so nothing inside it was checked",
    )
