"""A flat package's own signature: Developer ID Installer, chain to the root, TOC checksum,
timestamp; and the code inside its payload still checked."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from preflight_builders import Identity, Pki, cpio_odc, gzip_bytes, make_identity, xar
from seal_builders import CodeSigning, signed_thin, signed_xar

from uploader.preflight import PreflightReport
from uploader.preflight import messages as msg

Run = Callable[[Path], PreflightReport]
OID_DEV_ID_INSTALLER = "1.2.840.113635.100.6.1.14"
APP = "./Applications/Game.app/Contents/MacOS/Game"


@pytest.fixture(scope="module")
def installer(pki: Pki) -> Identity:
    return make_identity(
        "Developer ID Installer: Test Studio (TEAM123456)",
        issuer=pki.developer_id_ca,
        ou="TEAM123456",
        extension_oids=(OID_DEV_ID_INSTALLER,),
    )


def payload(pki: Pki, *, tamper: bool = False) -> dict[str, bytes]:
    signing = CodeSigning(identity=pki.developer_id_leaf, chain=[pki.developer_id_ca.cert])
    binary = signed_thin(signing).data
    if tamper:
        binary = binary[:5000] + b"\x90" + binary[5001:]
    return {
        "Distribution": b"<installer-gui-script/>",
        "Game.pkg/Payload": gzip_bytes(cpio_odc({APP: binary})),
    }


def findings(report: PreflightReport) -> list[tuple[str, str, str, str | None]]:
    return sorted((str(i.severity), i.path, i.message, i.detail) for i in report.issues)


def run(tmp_path: Path, preflight: Run, data: bytes) -> PreflightReport:
    path = tmp_path / "Game.pkg"
    path.write_bytes(data)
    return preflight(path)


def test_signed_package_has_no_findings(
    tmp_path: Path, preflight: Run, pki: Pki, installer: Identity
) -> None:
    data = signed_xar(payload(pki), installer, [pki.developer_id_ca.cert])
    report = run(tmp_path, preflight, data)
    assert report.issues == ()
    assert report.macho_files == 1


def test_code_inside_a_signed_package_is_still_checked(
    tmp_path: Path, preflight: Run, pki: Pki, installer: Identity
) -> None:
    data = signed_xar(payload(pki, tamper=True), installer, [pki.developer_id_ca.cert])
    [(severity, path, message, detail)] = findings(run(tmp_path, preflight, data))
    assert (severity, message) == ("error", msg.INVALID_SIGNATURE)
    assert path == "Game.pkg/Game.pkg Contents/Payload/Applications/Game.app/Contents/MacOS/Game"
    assert detail is not None and detail.startswith("page 1 (bytes 4096-8191)")


def test_application_certificate_is_not_an_installer_one(
    tmp_path: Path, preflight: Run, pki: Pki
) -> None:
    data = signed_xar(payload(pki), pki.developer_id_leaf, [pki.developer_id_ca.cert])
    assert findings(run(tmp_path, preflight, data)) == [
        (
            "error",
            "Game.pkg",
            msg.NOT_DEVELOPER_ID,
            "signed with 'Developer ID Application: Test Studio (TEAM123456)', not a "
            "Developer ID Installer certificate",
        )
    ]


def test_installer_certificate_from_a_rogue_ca(tmp_path: Path, preflight: Run, pki: Pki) -> None:
    rogue = make_identity(
        "Developer ID Installer: Rogue (TEAM123456)",
        issuer=pki.rogue_ca,
        ou="TEAM123456",
        extension_oids=(OID_DEV_ID_INSTALLER,),
    )
    data = signed_xar(payload(pki), rogue, [pki.rogue_ca.cert])
    [(severity, _, message, detail)] = findings(run(tmp_path, preflight, data))
    assert (severity, message) == ("error", msg.NOT_DEVELOPER_ID)
    assert detail is not None and "is not issued by Apple" in detail


def test_tampered_table_of_contents(
    tmp_path: Path, preflight: Run, pki: Pki, installer: Identity
) -> None:
    data = signed_xar(payload(pki), installer, [pki.developer_id_ca.cert], tamper_toc=True)
    report = run(tmp_path, preflight, data)
    assert [f for f in findings(report) if f[1] == "Game.pkg"] == [
        (
            "error",
            "Game.pkg",
            msg.INVALID_SIGNATURE,
            "the table of contents no longer matches its sha1 checksum: the package was "
            "changed after it was signed",
        )
    ]


def test_no_timestamp(tmp_path: Path, preflight: Run, pki: Pki, installer: Identity) -> None:
    data = signed_xar(payload(pki), installer, [pki.developer_id_ca.cert], timestamp=False)
    assert [(s, m) for s, _, m, _ in findings(run(tmp_path, preflight, data))] == [
        ("error", msg.NO_SECURE_TIMESTAMP)
    ]


def test_unsigned_package_is_a_warning(tmp_path: Path, preflight: Run, pki: Pki) -> None:
    report = run(tmp_path, preflight, xar(payload(pki)))
    assert findings(report) == [
        (
            "warning",
            "Game.pkg",
            msg.NOT_SIGNED,
            "the installer package has no signature: sign it with productsign --sign "
            "'Developer ID Installer: …' --timestamp",
        )
    ]


def test_garbage_signature_slot_is_a_finding_not_a_crash(
    tmp_path: Path, preflight: Run, pki: Pki, installer: Identity
) -> None:
    data = bytearray(signed_xar(payload(pki), installer, [pki.developer_id_ca.cert]))
    heap = 28 + int.from_bytes(data[8:16], "big")
    data[heap + 20 : heap + 40] = b"\xff" * 20  # inside the signature, after the checksum
    [(severity, _, message, detail)] = findings(run(tmp_path, preflight, bytes(data)))
    assert (severity, message) == ("error", msg.INVALID_SIGNATURE)
    assert detail is not None and "does not verify" in detail


def _bundle_payload(pki: Pki, name: str, *, tamper: bool = False) -> dict[str, bytes]:
    from seal_builders import Bundle, Link

    signing = CodeSigning(identity=pki.developer_id_leaf, chain=[pki.developer_id_ca.cert])
    bundle = Bundle()
    bundle.files[f"{name}/Contents/Resources/levels.pak"] = b"levels" * 1000
    bundle.seal(name, "Game", signing)
    if tamper:
        bundle.files[f"{name}/Contents/Resources/levels.pak"] = b"patched"
    files = {f"./Applications/{p}": e for p, e in bundle.files.items() if not isinstance(e, Link)}
    return {"Game.pkg/Payload": gzip_bytes(cpio_odc(files))}


def test_sealed_app_inside_a_package(
    tmp_path: Path, preflight: Run, pki: Pki, installer: Identity
) -> None:
    chain = [pki.developer_id_ca.cert]
    intact = run(
        tmp_path, preflight, signed_xar(_bundle_payload(pki, "Game.app"), installer, chain)
    )
    assert intact.issues == ()
    tampered = signed_xar(_bundle_payload(pki, "Game.app", tamper=True), installer, chain)
    assert findings(run(tmp_path, preflight, tampered)) == [
        (
            "error",
            "Game.pkg/Game.pkg Contents/Payload/Applications/Game.app",
            msg.INVALID_SIGNATURE,
            "sealed resources: Resources/levels.pak was modified after the bundle was signed",
        )
    ]


def test_bundle_without_a_bundle_name_in_a_package_is_named_not_passed(
    tmp_path: Path, preflight: Run, pki: Pki, installer: Identity
) -> None:
    """A streamed payload does not list its names first; files are hashed only under folders
    named like bundles, so a seal elsewhere is reported as not compared."""
    data = signed_xar(_bundle_payload(pki, "Game"), installer, [pki.developer_id_ca.cert])
    assert findings(run(tmp_path, preflight, data)) == [
        (
            "warning",
            "Game.pkg/Game.pkg Contents/Payload/Applications/Game",
            msg.SEAL_NOT_COMPARED,
            "its folder name has no bundle extension and the package payload does not list its "
            "names ahead, so its files were not hashed",
        )
    ]
