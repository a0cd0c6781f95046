"""Walking containers: zip (stored, deflated, nested jar/whl), .app folders, flat .pkg, .dmg."""

from __future__ import annotations

import io
import os
import unicodedata
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from preflight_builders import (
    CPU_X86_64,
    MH_DYLIB,
    Signing,
    SliceSpec,
    cpio_newc,
    cpio_odc,
    dmg_like,
    fat_macho,
    gzip_bytes,
    pbzx,
    thin_macho,
    xar,
    zip_bytes,
)

from uploader.preflight import PreflightInputError, PreflightReport, run_preflight
from uploader.preflight import messages as msg

Run = Callable[[Path], PreflightReport]

NOT_SIGNED = "The binary is not signed."


def unsigned_lib() -> bytes:
    return thin_macho(SliceSpec(cputype=CPU_X86_64, filetype=MH_DYLIB))


def error_paths(report: PreflightReport) -> set[str]:
    return {i.path for i in report.errors}


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_zip_paths_match_the_notary_log(
    tmp_path: Path, preflight: Run, developer_id: Callable[..., Signing], compression: int
) -> None:
    good = fat_macho(
        [SliceSpec(cputype=CPU_X86_64, signing=developer_id()), SliceSpec(signing=developer_id())]
    )
    archive = tmp_path / "Game.zip"
    archive.write_bytes(
        zip_bytes(
            {
                "Game.app/Contents/MacOS/Game": good,
                # No .dylib name, no executable bit: found by magic alone.
                "Game.app/Contents/Frameworks/libsteam_api.dylib": unsigned_lib(),
                "Game.app/Contents/Resources/data.pak": os.urandom(100_000),
                "Game.app/Contents/Resources/misnamed.txt": unsigned_lib(),
            },
            compression=compression,
        )
    )
    report = preflight(archive)
    assert error_paths(report) == {
        "Game.zip/Game.app/Contents/Frameworks/libsteam_api.dylib",
        "Game.zip/Game.app/Contents/Resources/misnamed.txt",
    }
    assert (report.macho_files, report.architecture_slices, report.files_scanned) == (3, 4, 4)


@pytest.mark.parametrize("inner", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
@pytest.mark.parametrize("outer", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_nested_jar_and_wheel_are_opened(
    tmp_path: Path, preflight: Run, inner: int, outer: int
) -> None:
    jar = zip_bytes(
        {"com/sun/jna/darwin-x86-64/libjnidispatch.jnilib": unsigned_lib()}, compression=inner
    )
    wheel = zip_bytes({"pkg/_ext.so": unsigned_lib(), "pkg/vendored.jar": jar}, compression=inner)
    archive = tmp_path / "App.zip"
    archive.write_bytes(
        zip_bytes(
            {"App.app/Contents/Java/app.jar": jar, "App.app/Contents/Resources/w.whl": wheel},
            compression=outer,
        )
    )
    report = preflight(archive)
    assert error_paths(report) == {
        "App.zip/App.app/Contents/Java/app.jar/com/sun/jna/darwin-x86-64/libjnidispatch.jnilib",
        "App.zip/App.app/Contents/Resources/w.whl/pkg/_ext.so",
        "App.zip/App.app/Contents/Resources/w.whl/pkg/vendored.jar/com/sun/jna/darwin-x86-64/libjnidispatch.jnilib",
    }
    assert {i.message for i in report.errors} >= {NOT_SIGNED}


def test_app_folder_clean_and_symlinks_skipped(
    tmp_path: Path, preflight: Run, developer_id: Callable[..., Signing]
) -> None:
    app = tmp_path / "Game.app"
    (app / "Contents/MacOS").mkdir(parents=True)
    (app / "Contents/Frameworks/Foo.framework/Versions/A").mkdir(parents=True)
    (app / "Contents/MacOS/Game").write_bytes(thin_macho(SliceSpec(signing=developer_id())))
    lib = thin_macho(SliceSpec(filetype=MH_DYLIB, signing=developer_id()))
    (app / "Contents/Frameworks/Foo.framework/Versions/A/Foo").write_bytes(lib)
    (app / "Contents/Frameworks/Foo.framework/Foo").symlink_to("Versions/A/Foo")
    (app / "Contents/Info.plist").write_bytes(b"<plist/>")
    report = preflight(app)
    assert report.issues == ()
    assert report.macho_files == 2
    assert "preflight PASS" in report.render_text()


def test_nfd_file_name_is_a_warning(
    tmp_path: Path, preflight: Run, developer_id: Callable[..., Signing]
) -> None:
    name = unicodedata.normalize("NFD", "Résumé.dylib")
    archive = tmp_path / "Game.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(
            f"Game.app/Contents/Frameworks/{name}",
            thin_macho(SliceSpec(filetype=MH_DYLIB, signing=developer_id())),
        )
        zf.writestr("Game.app/Contents/Resources/日本語.txt", b"stable under normalisation")
    archive.write_bytes(buffer.getvalue())
    report = preflight(archive)
    assert [(str(i.severity), i.message) for i in report.issues] == [
        ("warning", msg.FILENAME_NORMALISATION)
    ]
    assert report.issues[0].path.endswith(name)
    assert not report.has_errors


def _pkg_report(
    tmp_path: Path, preflight: Run, files: dict[str, bytes], **kwargs: tuple[str, ...]
) -> PreflightReport:
    path = tmp_path / "Game.pkg"
    path.write_bytes(xar(files, **kwargs))
    return preflight(path)


def test_product_pkg_with_gzip_payload(
    tmp_path: Path, preflight: Run, developer_id: Callable[..., Signing]
) -> None:
    payload = gzip_bytes(
        cpio_odc(
            {
                "./Applications/Game.app/Contents/MacOS/Game": thin_macho(
                    SliceSpec(signing=developer_id())
                ),
                "./Applications/Game.app/Contents/Frameworks/libfoo.dylib": unsigned_lib(),
                "./Applications/Game.app/Contents/Resources/big.pak": os.urandom(50_000),
            }
        )
    )
    report = _pkg_report(
        tmp_path,
        preflight,
        {
            "Distribution": b"<installer-gui-script/>",
            "Game-Component.pkg/Payload": payload,
            "Game-Component.pkg/PackageInfo": b"<pkg-info/>",
        },
    )
    assert error_paths(report) == {
        "Game.pkg/Game-Component.pkg Contents/Payload/Applications/Game.app/Contents/Frameworks/libfoo.dylib"
    }
    assert report.macho_files == 2


def test_component_pkg_with_pbzx_payload_and_zlib_encoded_heap(
    tmp_path: Path, preflight: Run
) -> None:
    tool = thin_macho(SliceSpec(cputype=CPU_X86_64))
    payload = pbzx(
        cpio_newc({"./usr/local/bin/tool": tool, "./usr/local/share/readme": b"x" * 10_000})
    )
    report = _pkg_report(
        tmp_path, preflight, {"Payload": payload, "Bom": b"BOMStore"}, encode_gzip=("Payload",)
    )
    assert error_paths(report) == {"Game.pkg/Payload/usr/local/bin/tool"}
    assert {i.architecture for i in report.errors} == {"x86_64"}


def test_zip_inside_pkg_inside_zip(tmp_path: Path, preflight: Run) -> None:
    inner_zip = zip_bytes({"lib/native.jnilib": unsigned_lib()}, compression=zipfile.ZIP_DEFLATED)
    pkg = xar({"Payload": gzip_bytes(cpio_odc({"./opt/app/lib.jar": inner_zip}))})
    archive = tmp_path / "Release.zip"
    archive.write_bytes(zip_bytes({"Installer.pkg": pkg}, compression=zipfile.ZIP_DEFLATED))
    report = preflight(archive)
    assert error_paths(report) == {
        "Release.zip/Installer.pkg/Payload/opt/app/lib.jar/lib/native.jnilib"
    }


def test_dmg_is_reported_as_not_inspected(tmp_path: Path, preflight: Run) -> None:
    image = tmp_path / "Game.dmg"
    image.write_bytes(dmg_like())
    report = preflight(image)
    assert [(str(i.severity), i.message, i.path) for i in report.issues] == [
        ("warning", msg.DMG_NOT_INSPECTED, "Game.dmg")
    ]
    # Found by its trailer too, whatever the name, inside an archive.
    archive = tmp_path / "Bundle.zip"
    archive.write_bytes(zip_bytes({"disk-image": dmg_like()}, compression=zipfile.ZIP_STORED))
    assert [i.message for i in preflight(archive).issues] == [msg.DMG_NOT_INSPECTED]


def test_damaged_nested_archive_is_an_error_naming_it(tmp_path: Path, preflight: Run) -> None:
    archive = tmp_path / "Game.zip"
    archive.write_bytes(
        zip_bytes(
            {
                "Game.app/Contents/Java/broken.jar": b"PK\x03\x04" + b"\x00" * 100,
                "Game.app/Contents/MacOS/Game": unsigned_lib(),
            },
            compression=zipfile.ZIP_STORED,
        )
    )
    report = preflight(archive)
    unread = [i for i in report.errors if i.message == msg.CONTAINER_NOT_INSPECTED]
    assert [i.path for i in unread] == ["Game.zip/Game.app/Contents/Java/broken.jar"]
    assert unread[0].detail and "BadZipFile" in unread[0].detail
    assert error_paths(report) == {
        "Game.zip/Game.app/Contents/Java/broken.jar",
        "Game.zip/Game.app/Contents/MacOS/Game",
    }


def test_missing_or_unreadable_input_raises_actionable_error(tmp_path: Path) -> None:
    with pytest.raises(PreflightInputError, match="no such file"):
        run_preflight(tmp_path / "nope.zip")
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(PreflightInputError, match="ditto"):
        run_preflight(bad)


def test_only_first_bytes_of_non_macho_members_are_read(tmp_path: Path, preflight: Run) -> None:
    """A 64 MiB stored member costs a few bytes of reading, not 64 MiB (Linux /proc/self/io)."""
    archive = tmp_path / "Big.zip"
    with (
        zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf,
        zf.open("Big.app/Contents/Resources/huge.pak", "w", force_zip64=True) as member,
    ):
        block = b"\x00" * (1 << 20)
        for _ in range(64):
            member.write(block)
    with zipfile.ZipFile(archive, "a", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("Big.app/Contents/MacOS/Big", unsigned_lib())

    def bytes_read() -> int:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("rchar:"):
                return int(line.split()[1])
        raise AssertionError("no rchar in /proc/self/io")

    before = bytes_read()
    report = preflight(archive)
    read = bytes_read() - before
    assert report.macho_files == 1
    assert read < 4 << 20, f"read {read} bytes for a 64 MiB archive"
