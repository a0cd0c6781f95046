"""Damaged signatures, seals, package signatures and disk-image trailers: findings (or, for an
archive that cannot be read at all, one line naming it), never a traceback. Deterministic
mutations of correctly signed builds."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

from preflight_builders import Identity, Pki, cpio_odc, gzip_bytes, make_identity
from seal_builders import Bundle, CodeSigning, signed_thin, signed_xar, udif

from uploader.preflight import PreflightInputError, PreflightReport

Run = Callable[[Path], PreflightReport]


def mutations(data: bytes, start: int, seed: int, count: int) -> list[bytes]:
    """``count`` copies of ``data``, each with a few bytes after ``start`` overwritten."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        copy = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(start, len(copy))
            copy[at] = rng.choice([0x00, 0xFF, 0x7F, 0x80, rng.randrange(256)])
        out.append(bytes(copy))
    return out


def test_damaged_code_signatures(tmp_path: Path, preflight: Run, signing: CodeSigning) -> None:
    binary = signed_thin(signing, code_bytes=6000).data
    signature_at = binary.find(b"\xfa\xde\x0c\xc0")
    # Up to the CMS blob: a damaged certificate trips inspect_macho's Developer ID check
    # (cryptography parses names lazily), which is outside these parsers.
    cms_at = binary.find(b"\xfa\xde\x0b\x01")
    path = tmp_path / "Game"
    flagged = 0
    for mutated in mutations(binary[:cms_at], signature_at, seed=13, count=150):
        mutated += binary[cms_at:]
        path.write_bytes(mutated)
        flagged += preflight(path).has_errors
    assert flagged > 100  # most bytes of a signature matter; none of them may crash preflight


def test_damaged_seals(tmp_path: Path, preflight: Run, signing: CodeSigning) -> None:
    bundle = Bundle()
    bundle.files["Game.app/Contents/Resources/a.txt"] = b"a"
    bundle.seal("Game.app", "Game", signing)
    seal_path = "Game.app/Contents/_CodeSignature/CodeResources"
    seal = bundle.files[seal_path]
    assert isinstance(seal, bytes)
    for index, mutated in enumerate(mutations(seal, 0, seed=14, count=60)):
        bundle.files[seal_path] = mutated
        target = tmp_path / str(index)
        target.mkdir()
        bundle.write_tree(target)
        assert preflight(target / "Game.app").has_errors


def test_damaged_package_signatures(tmp_path: Path, preflight: Run, pki: Pki) -> None:
    installer: Identity = make_identity(
        "Developer ID Installer: Test Studio (TEAM123456)",
        issuer=pki.developer_id_ca,
        ou="TEAM123456",
        extension_oids=("1.2.840.113635.100.6.1.14",),
    )
    payload = {"Payload": gzip_bytes(cpio_odc({"./readme": b"hello"}))}
    package = signed_xar(payload, installer, [pki.developer_id_ca.cert])
    path = tmp_path / "Game.pkg"

    def flags(mutated: bytes) -> bool:
        """Whether preflight refuses the package: an error finding, or one line naming the file."""
        path.write_bytes(mutated)
        try:
            return preflight(path).has_errors
        except PreflightInputError as exc:  # the only exception that may escape
            assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc), str(exc)
            return True

    # Header, table of contents, its checksum and the signature over it: all are checked (zlib's
    # own check, the checksum, the signature); only the unused end of the signature's slot is not.
    cms_at = package.find(b"\x30\x80\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02")  # SignedData
    assert cms_at > 0
    flagged = sum(flags(mutated + package[cms_at:]) for mutated in mutations(package[:cms_at], 0, seed=15, count=150))
    assert flagged >= 140
    # Anywhere, the CMS (read for its timestamp) and the payload included: a report or one line.
    for mutated in mutations(package, cms_at, seed=16, count=150):
        flags(mutated)


def test_damaged_disk_images(tmp_path: Path, preflight: Run, signing: CodeSigning) -> None:
    image = udif({"disk image (Apple_HFS : 4)": [0x80000005]}, signing)
    path = tmp_path / "Game.dmg"
    for mutated in mutations(image, len(image) - 4096, seed=16, count=150):
        path.write_bytes(mutated)
        assert preflight(path).issues
