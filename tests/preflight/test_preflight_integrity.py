"""Preflight sees what the notary service sees: code pages, special slots, the CMS binding and
bundle seals, each tampering reported as "The signature of the binary is invalid." with a detail,
and nothing reported on the intact builds."""

from __future__ import annotations

import hashlib
import os
import plistlib
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from preflight_builders import CPU_X86_64, HASH_SHA1, HASH_SHA256, MH_DYLIB
from seal_builders import Bundle, CodeSigning, Link, fat, signed_thin

from uploader.preflight import PreflightReport
from uploader.preflight import messages as msg

Run = Callable[[Path], PreflightReport]
FIXTURES = Path(__file__).parent.parent / "fixtures" / "preflight"
MARKUPSAFE = FIXTURES / "markupsafe-3.0.2-_speedups-universal2.so"


def invalid(report: PreflightReport) -> list[tuple[str, str | None, str | None]]:
    return sorted(
        (i.path, i.architecture, i.detail)
        for i in report.issues
        if i.message == msg.INVALID_SIGNATURE
    )


def flip(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1 :]


# --- code pages ---------------------------------------------------------------------------------


def universal(signing: CodeSigning) -> bytes:
    dual = CodeSigning(signing.identity, signing.chain, hash_types=(HASH_SHA1, HASH_SHA256))
    return fat(
        [
            (CPU_X86_64, signed_thin(dual, cputype=CPU_X86_64, code_bytes=40_000).data),
            (0x0100000C, signed_thin(signing, code_bytes=40_000).data),
        ]
    )


def test_intact_universal_binary_has_no_findings(
    tmp_path: Path, preflight: Run, signing: CodeSigning
) -> None:
    path = tmp_path / "Game"
    path.write_bytes(universal(signing))
    report = preflight(path)
    assert report.issues == ()
    assert report.architecture_slices == 2


@pytest.mark.parametrize("container", ["bare", "stored", "deflated"])
def test_flipped_code_byte_names_the_page(
    tmp_path: Path, preflight: Run, signing: CodeSigning, container: str
) -> None:
    binary = universal(signing)
    first_slice = struct.unpack_from(">I", binary, 16)[0]
    tampered = flip(binary, first_slice + 3 * 4096 + 100)  # page 3 of the x86_64 slice
    if container == "bare":
        path, shown = tmp_path / "Game", "Game"
        path.write_bytes(tampered)
    else:
        path, shown = tmp_path / "Game.zip", "Game.zip/Game"
        method = zipfile.ZIP_STORED if container == "stored" else zipfile.ZIP_DEFLATED
        with zipfile.ZipFile(path, "w", compression=method) as archive:
            archive.writestr("Game", tampered)
    report = preflight(path)
    details = invalid(report)
    # Both CodeDirectories (SHA-1 and SHA-256) of the x86_64 slice see it; arm64 is intact.
    assert [(p, arch) for p, arch, _ in details] == [(shown, "x86_64"), (shown, "x86_64")]
    assert all("page 3 (bytes 12288-16383)" in (d or "") for _, _, d in details)
    assert {"SHA-1", "SHA-256"} == {
        d.split(" CodeDirectory")[0].rsplit(" ", 1)[-1] for *_, d in details if d
    }


def test_code_directory_patched_to_match_is_caught_by_the_cms(
    tmp_path: Path, preflight: Run, signing: CodeSigning
) -> None:
    """Whoever patches the code and its page hash still cannot re-sign the CodeDirectory."""
    binary = signed_thin(signing, code_bytes=10_000).data
    tampered = bytearray(flip(binary, 5000))  # page 1
    cd_at = tampered.find(struct.pack(">I", 0xFADE0C02))
    hash_offset = struct.unpack_from(">I", tampered, cd_at + 16)[0]
    slot = cd_at + hash_offset + 32 * 1
    tampered[slot : slot + 32] = hashlib.sha256(tampered[4096:8192]).digest()
    path = tmp_path / "Game"
    path.write_bytes(bytes(tampered))
    [(_, arch, detail)] = invalid(preflight(path))
    assert arch == "arm64"
    assert detail is not None and "messageDigest is not the digest of the CodeDirectory" in detail
    # Patching messageDigest too leaves a signature over attributes that are not the signed ones.
    cd_length = struct.unpack_from(">I", tampered, cd_at + 4)[0]
    old_digest = hashlib.sha256(binary[cd_at : cd_at + cd_length]).digest()
    new_digest = hashlib.sha256(tampered[cd_at : cd_at + cd_length]).digest()
    assert tampered.count(old_digest) == 1
    path.write_bytes(bytes(tampered).replace(old_digest, new_digest))
    [(_, _, detail)] = invalid(preflight(path))
    assert detail == "the CMS signature does not verify with the signing certificate's key"


@pytest.mark.parametrize("wrong", [False, True])
def test_cdhash_attributes_of_the_cms(
    tmp_path: Path, preflight: Run, signing: CodeSigning, wrong: bool
) -> None:
    """codesign lists every CodeDirectory's cdhash in the signed attributes; a list that does
    not match (a CodeDirectory swapped in from another signature) is invalid."""
    signing.hash_types = (HASH_SHA1, HASH_SHA256)
    signing.cdhash_attributes, signing.wrong_cdhashes = True, wrong
    path = tmp_path / "Game"
    path.write_bytes(signed_thin(signing).data)
    expected = "the cdhashes the CMS signature lists are not those of the CodeDirectories"
    assert [d for *_, d in invalid(preflight(path))] == ([expected] if wrong else [])


def test_entitlements_changed_after_signing(
    tmp_path: Path, preflight: Run, signing: CodeSigning
) -> None:
    signing.entitlements = {"com.apple.security.cs.allow-jit": True}
    binary = signed_thin(signing).data
    marker = b"allow-jit"
    at = binary.find(marker)
    path = tmp_path / "Game"
    path.write_bytes(binary[:at] + b"allow-jiT" + binary[at + len(marker) :])
    [(_, _, detail)] = invalid(preflight(path))
    assert (
        detail is not None and "entitlements blob differs from its hash in special slot 5" in detail
    )


def test_real_linker_signed_slice_pages_are_checked(tmp_path: Path, preflight: Run) -> None:
    """markupsafe's arm64 slice is linker-signed with real page hashes: intact it passes the
    page check; one flipped byte in its code is found."""
    data = MARKUPSAFE.read_bytes()
    intact = tmp_path / "intact.so"
    intact.write_bytes(data)
    assert invalid(preflight(intact)) == []
    count = struct.unpack_from(">I", data, 4)[0]
    arm64 = next(
        struct.unpack_from(">iiIII", data, 8 + 20 * i)
        for i in range(count)
        if struct.unpack_from(">i", data, 8 + 20 * i)[0] == 0x0100000C
    )
    tampered = tmp_path / "tampered.so"
    tampered.write_bytes(flip(data, arm64[2] + 0x2000))
    [(_, arch, detail)] = invalid(preflight(tampered))
    assert arch == "arm64" and detail is not None and detail.startswith("page 2 ")


# --- bundles ------------------------------------------------------------------------------------

APP = "Game.app"
ENGINE = f"{APP}/Contents/Frameworks/Engine.framework"


def game(signing: CodeSigning) -> Bundle:
    """Game.app as codesign --deep leaves it: a framework (sealed first), a helper tool, a
    plug-in dylib outside the nested-code folders, resources, an optional localisation and a
    resource symlink; then the app's own seal."""
    bundle = Bundle()
    bundle.files[f"{ENGINE}/Versions/A/Resources/engine.dat"] = b"engine data" * 100
    bundle.seal(ENGINE, "Engine", signing, framework=True)
    bundle.add_code(f"{APP}/Contents/MacOS/CrashReporter", signing)
    bundle.files[f"{APP}/Contents/Resources/data.pak"] = os.urandom(50_000)
    bundle.files[f"{APP}/Contents/Resources/en.lproj/Localizable.strings"] = b'"a" = "b";'
    bundle.files[f"{APP}/Contents/Resources/latest.pak"] = Link("data.pak")
    bundle.files[f"{APP}/Contents/PkgInfo"] = b"APPL????"
    bundle.seal(APP, "Game", signing)
    return bundle


def edit_seal(bundle: Bundle, change: Callable[[dict[str, Any]], object]) -> None:
    """Change the app's CodeResources after signing (the executable still seals the old one)."""
    seal_path = f"{APP}/Contents/_CodeSignature/CodeResources"
    seal = plistlib.loads(bundle.files[seal_path])  # type: ignore[arg-type]
    change(seal)
    bundle.files[seal_path] = plistlib.dumps(seal)


def write(bundle: Bundle, tmp_path: Path, form: str) -> tuple[Path, str]:
    """The bundle as a folder or a ditto-style zip; returns the path and the display prefix."""
    tmp_path.mkdir(exist_ok=True)
    if form == "folder":
        bundle.write_tree(tmp_path)
        return tmp_path / APP, ""
    path = tmp_path / "Game.zip"
    method = zipfile.ZIP_STORED if form == "stored zip" else zipfile.ZIP_DEFLATED
    path.write_bytes(bundle.zip_bytes(compression=method))
    return path, "Game.zip/"


FORMS = ["folder", "stored zip", "deflated zip"]


@pytest.mark.parametrize("form", FORMS)
def test_intact_bundle_has_no_findings(
    tmp_path: Path, preflight: Run, signing: CodeSigning, form: str
) -> None:
    path, _ = write(game(signing), tmp_path, form)
    report = preflight(path)
    assert report.issues == ()
    assert report.macho_files == 3


def test_bundle_kept_under_resources_is_sealed_file_by_file(
    tmp_path: Path, preflight: Run, signing: CodeSigning
) -> None:
    bundle = Bundle()
    plugin = f"{APP}/Contents/Resources/Plugin.bundle"
    bundle.files[f"{plugin}/Contents/Resources/plugin.cfg"] = b"enabled=1"
    bundle.seal(plugin, "Plugin", signing)
    bundle.seal(APP, "Game", signing)
    path, _ = write(bundle, tmp_path / "intact", "folder")
    assert preflight(path).issues == ()
    bundle.files[f"{plugin}/Contents/Resources/plugin.cfg"] = b"enabled=0"
    path, _ = write(bundle, tmp_path / "changed", "folder")
    assert [(p, d) for p, _, d in invalid(preflight(path))] == [
        (f"{APP}", "sealed resources: Resources/Plugin.bundle/Contents/Resources/plugin.cfg was "
         "modified after the bundle was signed"),
        (plugin, "sealed resources: Resources/plugin.cfg was modified after the bundle was signed"),
    ]  # fmt: skip


def test_appledouble_members_of_a_zip_are_attributes_not_files(
    tmp_path: Path, preflight: Run, signing: CodeSigning
) -> None:
    """ditto -c -k stores extended attributes as "._name" members; unpacked, they are
    attributes again, so the seal does not see them. In a folder they are real files."""
    bundle = game(signing)
    bundle.files[f"{APP}/Contents/Resources/._data.pak"] = b"\x00\x05\x16\x07AppleDouble"
    path, _ = write(bundle, tmp_path / "zip", "deflated zip")
    assert preflight(path).issues == ()
    path, _ = write(bundle, tmp_path / "folder", "folder")
    assert [d for *_, d in invalid(preflight(path))] == [
        "sealed resources: Resources/._data.pak was added after the bundle was signed"
    ]


@pytest.mark.parametrize("form", FORMS)
def test_resources_added_removed_changed_after_sealing(
    tmp_path: Path, preflight: Run, signing: CodeSigning, form: str
) -> None:
    bundle = game(signing)
    bundle.files[f"{APP}/Contents/Resources/steam_appid.txt"] = b"480"  # added
    del bundle.files[f"{APP}/Contents/PkgInfo"]  # omitted by the rules: not a finding
    bundle.files[f"{APP}/Contents/Resources/data.pak"] += b"patched"  # changed
    del bundle.files[f"{APP}/Contents/Resources/en.lproj/Localizable.strings"]  # optional
    bundle.files[f"{APP}/Contents/Resources/latest.pak"] = b"a copy, not the symlink"
    del bundle.files[f"{APP}/Contents/MacOS/CrashReporter"]  # removed
    path, prefix = write(bundle, tmp_path, form)
    report = preflight(path)
    assert invalid(report) == [
        (f"{prefix}{APP}", None, "sealed resources: MacOS/CrashReporter was sealed but is missing"),
        (f"{prefix}{APP}", None, "sealed resources: Resources/data.pak was modified after the "
         "bundle was signed"),
        (f"{prefix}{APP}", None, "sealed resources: Resources/latest.pak was sealed as a symlink "
         "to 'data.pak' and is now a regular file"),
        (f"{prefix}{APP}", None, "sealed resources: Resources/steam_appid.txt was added after "
         "the bundle was signed"),
    ]  # fmt: skip


@pytest.mark.parametrize("form", FORMS)
def test_edited_info_plist(tmp_path: Path, preflight: Run, signing: CodeSigning, form: str) -> None:
    bundle = game(signing)
    info = f"{APP}/Contents/Info.plist"
    content = bundle.files[info]
    assert isinstance(content, bytes)
    bundle.files[info] = content.replace(b"</dict>", b"<key>LSMinimumSystemVersion</key>"
                                         b"<string>12.0</string></dict>")  # fmt: skip
    path, prefix = write(bundle, tmp_path, form)
    assert invalid(preflight(path)) == [
        (
            f"{prefix}{APP}/Contents/MacOS/Game",
            "arm64",
            "Info.plist was changed after signing: it no longer matches special slot 1 of the "
            "SHA-256 CodeDirectory",
        )
    ]


def test_seal_removed_or_edited(tmp_path: Path, preflight: Run, signing: CodeSigning) -> None:
    bundle = game(signing)
    seal = f"{APP}/Contents/_CodeSignature/CodeResources"
    content = bundle.files.pop(seal)
    path, prefix = write(bundle, tmp_path / "a", "deflated zip")
    [(where, _, detail)] = invalid(preflight(path))
    assert where == f"{prefix}{APP}/Contents/MacOS/Game"
    assert detail is not None and "CodeResources is missing" in detail
    assert isinstance(content, bytes)
    bundle.files[seal] = content.replace(b"<key>files2</key>", b"<key>files2</key> ")
    path, prefix = write(bundle, tmp_path / "b", "deflated zip")
    [(where, arch, detail)] = invalid(preflight(path))
    assert (where, arch) == (f"{prefix}{APP}/Contents/MacOS/Game", "arm64")
    assert detail is not None and "special slot 3" in detail


@pytest.mark.parametrize("form", FORMS)
def test_broken_nested_seal_is_reported_inside_out(
    tmp_path: Path, preflight: Run, signing: CodeSigning, form: str
) -> None:
    bundle = game(signing)
    bundle.files[f"{ENGINE}/Versions/A/Resources/engine.dat"] = b"patched engine data"
    path, prefix = write(bundle, tmp_path, form)
    assert invalid(preflight(path)) == [
        (f"{prefix}{APP}", None, "sealed resources: nested code Frameworks/Engine.framework is "
         "itself invalid (see its own findings)"),
        (f"{prefix}{ENGINE}", None, "sealed resources: Resources/engine.dat was modified after "
         "the bundle was signed"),
    ]  # fmt: skip


def test_nested_code_re_signed_after_the_outer_seal(
    tmp_path: Path, preflight: Run, signing: CodeSigning
) -> None:
    bundle = game(signing)
    sealed = bundle.cdhashes[f"{APP}/Contents/MacOS/CrashReporter"]
    bundle.files[f"{APP}/Contents/MacOS/CrashReporter"] = signed_thin(
        signing, seed=b"rebuilt", filetype=MH_DYLIB
    ).data
    bundle.files[f"{ENGINE}/Versions/A/Engine"] = signed_thin(signing, seed=b"new engine").data
    path, _ = write(bundle, tmp_path, "deflated zip")
    details = [d for *_, d in invalid(preflight(path))]
    assert any(
        f"nested code MacOS/CrashReporter does not have the cdhash the seal recorded "
        f"({sealed.hex()})" in (d or "")
        for d in details
    )
    # The framework's new executable seals nothing, so its own seal fails, and the app's too.
    assert any("Frameworks/Engine.framework does not have the cdhash" in (d or "") for d in details)
    assert any("special slot 3 is empty" in (d or "") for d in details)


def test_legacy_sha1_only_seal_is_named_not_passed(
    tmp_path: Path, preflight: Run, signing: CodeSigning
) -> None:
    bundle = game(signing)
    edit_seal(bundle, lambda seal: seal["files2"]["Resources/data.pak"].pop("hash2"))
    path, _ = write(bundle, tmp_path, "folder")
    report = preflight(path)
    assert [(str(i.severity), i.message, i.detail) for i in report.issues if i.path == APP] == [
        (
            "warning",
            msg.SEAL_NOT_COMPARED,
            "1 sealed file(s) were not compared: the seal records only a SHA-1 digest (made "
            "before OS X 10.9), or signed code is sealed as a plain file",
        )
    ]


# --- hostile or damaged input: findings, never a traceback ------------------------------------


def test_code_directory_claiming_more_pages_than_it_holds(
    tmp_path: Path, preflight: Run, signing: CodeSigning
) -> None:
    binary = bytearray(signed_thin(signing, code_bytes=10_000).data)
    cd_at = binary.find(struct.pack(">I", 0xFADE0C02))
    struct.pack_into(">I", binary, cd_at + 28, 1 << 20)  # nCodeSlots
    path = tmp_path / "Game"
    path.write_bytes(bytes(binary))
    [(_, arch, detail)] = invalid(preflight(path))
    assert arch == "arm64" and detail == "CodeDirectory hash slots run outside the blob"


@pytest.mark.parametrize(
    "seal",
    [b"not a plist", b"<plist><array/></plist>", b'<?xml version="1.0"?><plist><dict>'],
)
def test_unreadable_seal(tmp_path: Path, preflight: Run, signing: CodeSigning, seal: bytes) -> None:
    bundle = game(signing)
    bundle.files[f"{APP}/Contents/_CodeSignature/CodeResources"] = seal
    path, prefix = write(bundle, tmp_path, "deflated zip")
    details = [(p, d) for p, _, d in invalid(preflight(path))]
    assert (f"{prefix}{APP}/Contents/MacOS/Game", None) not in details
    assert any(p == f"{prefix}{APP}" and "CodeResources" in (d or "") for p, d in details)


def test_hostile_rules_do_not_hang_the_scan(
    tmp_path: Path, preflight: Run, signing: CodeSigning
) -> None:
    """A catastrophic-backtracking rule is ignored; the rest of the seal is still compared."""
    bundle = game(signing)
    edit_seal(bundle, lambda seal: seal["rules2"].update({"(a+)+$": {"omit": True, "weight": 5e3}}))
    bundle.files[f"{APP}/Contents/Resources/" + "a" * 60 + "!"] = b"added"
    path, _ = write(bundle, tmp_path, "folder")
    details = [d or "" for *_, d in invalid(preflight(path))]
    assert any(("a" * 60 + "! was added") in d for d in details)
