"""Which record a signature is filed under, derived three ways that must agree.

The client (``uploader.staple.identity``), the emulator (``service.emulator.codesign``) and the
test's own hand decoder (``tests.support.cdhash``, cross-checked with LIEF when it is installed)
are separate code: a wrong derivation in one of them makes these tests fail instead of agreeing
with itself. Fixtures: a universal binary whose first ``fat_arch`` entry names the slice at the
higher offset and carries SHA-1 and SHA-256 CodeDirectories, a thin app, a flat .pkg, a .dmg.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from service.emulator.codesign import signed_code_in
from service.emulator.sample_app import make_sample_app
from tests.support.artifacts import make_dmg, make_pkg, make_universal_app
from tests.support.cdhash import (
    embedded_signature,
    record_name_of_app,
    record_name_of_binary,
    record_name_of_dmg,
    record_name_of_signature,
)
from uploader.artifact import ticket_key_for


def zip_bundle(app: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w") as zipped:
        for member in sorted(app.rglob("*")):
            if member.is_file() and not member.is_symlink():
                zipped.write(member, member.relative_to(app.parent))
    return archive


def lowest_offset_slice(binary: bytes) -> bytes:
    entries = [(int.from_bytes(binary[8 + 20 * i + 8 : 8 + 20 * i + 12], "big"),
                int.from_bytes(binary[8 + 20 * i + 12 : 8 + 20 * i + 16], "big"))
               for i in range(int.from_bytes(binary[4:8], "big"))]
    offset, size = min(entries)
    return binary[offset : offset + size]


def test_a_universal_app_is_named_by_its_first_fat_arch_entry(tmp_path: Path) -> None:
    app = make_universal_app(tmp_path)
    binary = (app / "Contents" / "MacOS" / "Universal").read_bytes()
    expected = record_name_of_app(app)
    lowest = record_name_of_binary(lowest_offset_slice(binary))
    assert expected != lowest  # the fixture tells the two choices apart
    assert expected.startswith("2/2/")  # its SHA-256 CodeDirectory, not the SHA-1 in slot 0
    assert ticket_key_for(app).record_name == expected


def test_the_emulator_files_tickets_under_the_same_names_by_its_own_decoder(
    tmp_path: Path,
) -> None:
    universal = make_universal_app(tmp_path / "u")
    thin = make_sample_app(tmp_path / "t", "Thin")
    binary = (universal / "Contents" / "MacOS" / "Universal").read_bytes()
    found = signed_code_in(zip_bundle(universal, tmp_path / "U.zip"), "U.zip")
    assert [(code.arch, code.record_name) for code in found] == [
        ("x86_64", record_name_of_app(universal)),  # fat-header order: the first entry first
        ("arm64", record_name_of_binary(lowest_offset_slice(binary))),
    ]
    [thin_code] = signed_code_in(zip_bundle(thin, tmp_path / "T.zip"), "T.zip")
    assert thin_code.record_name == record_name_of_app(thin) == ticket_key_for(thin).record_name
    assert thin_code.log_entry()["cdhash"] == record_name_of_app(thin)[-40:]

    dmg = make_dmg(tmp_path / "Game.dmg")
    [image] = signed_code_in(dmg, "Game.dmg")
    assert image.record_name == record_name_of_dmg(dmg.read_bytes())
    assert ticket_key_for(dmg).record_name == image.record_name

    for style, digest_type in (("sha1", 1), ("sha256", 2)):
        pkg = make_pkg(tmp_path / f"{style}.pkg", style=style)
        [package] = signed_code_in(pkg, pkg.name)
        assert package.digest_type == digest_type
        assert package.record_name == ticket_key_for(pkg).record_name


def test_lief_finds_the_same_signatures_as_the_hand_decoder(tmp_path: Path) -> None:
    lief = pytest.importorskip("lief")
    lief.logging.disable()  # it warns that the test binaries have no __LINKEDIT segment
    app = make_universal_app(tmp_path)
    executable = app / "Contents" / "MacOS" / "Universal"
    data = executable.read_bytes()
    parsed = lief.MachO.parse(str(executable))
    names = []
    for index in range(parsed.size):  # LIEF lists slices in fat-header order
        binary = parsed.at(index)
        start = binary.fat_offset + binary.code_signature.data_offset
        superblob = data[start : start + binary.code_signature.data_size]
        slice_bytes = data[binary.fat_offset :]
        assert superblob == embedded_signature(slice_bytes)
        names.append(record_name_of_signature(superblob))
    assert names[0] == record_name_of_app(app) == ticket_key_for(app).record_name
    assert str(parsed.at(0).header.cpu_type).endswith("X86_64")
