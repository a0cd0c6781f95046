"""Preflight on hostile input: every bound holds, nothing unreadable passes, nothing crashes.

Each test builds one input the adversarial review of issue 10 used (bombs, parser errors) and
checks the answer: an error naming the member and the reason, or a refusal of the whole path,
never a traceback or a PASS. Limits are tightened per test (``Limits``) so bombs stay small;
``test_preflight_hostile_cli.py`` runs full-size bombs at the default limits.
"""

from __future__ import annotations

import os
import plistlib
import re
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from hostile_inputs import (
    cpio_giant_name,
    deflated_zip_bomb,
    nested_stored_zips,
    pbzx_claiming,
    pbzx_inflating,
    pkg_with_payload,
    toc_bomb_pkg,
    unsigned_lib,
    write,
    xar_with_toc,
    zip_with_bad_member_offset,
    zip_with_empty_member_name,
    zip_with_unknown_compression,
)
from preflight_builders import (
    CPU_X86_64,
    CS_RUNTIME,
    Pki,
    Signing,
    SliceSpec,
    cpio_newc,
    cpio_odc,
    der,
    entitlements_der,
    gzip_bytes,
    thin_macho,
    xar,
    zip_bytes,
)

from uploader.preflight import PreflightInputError, PreflightReport, run_preflight
from uploader.preflight import messages as msg
from uploader.preflight.limits import DEFAULT_LIMITS
from uploader.preflight.walk import open_regular_file
from uploader.source_file import confine_to

NOT_READ = msg.CONTAINER_NOT_INSPECTED
GET_TASK_ALLOW = "com.apple.security.get-task-allow"


@pytest.fixture
def check(pki: Pki) -> Callable[..., PreflightReport]:
    def run(path: Path, **limits: int) -> PreflightReport:
        return run_preflight(
            path, trust_anchors=[pki.root.cert], limits=replace(DEFAULT_LIMITS, **limits)
        )

    return run


def unread(report: PreflightReport) -> dict[str, str]:
    """Path -> detail of every member reported as not (fully) read."""
    return {i.path: i.detail or "" for i in report.errors if i.message == NOT_READ}


# --- xar table of contents ------------------------------------------------------------------


def test_toc_bomb_stops_at_the_toc_limit(
    tmp_path: Path, check: Callable[..., PreflightReport]
) -> None:
    bomb = toc_bomb_pkg(inflated_mib=64)
    assert len(bomb) < 100_000
    with pytest.raises(PreflightInputError, match="inflates to more than 8,388,608 bytes"):
        check(write(tmp_path / "Bomb.pkg", bomb))
    # Inside a zip, the same bomb is an error on that member and the rest is still checked.
    archive = write(
        tmp_path / "Release.zip",
        zip_bytes({"Bomb.pkg": bomb, "lib.dylib": unsigned_lib()}, compression=0),
    )
    report = check(archive)
    assert "inflates to more than" in unread(report)["Release.zip/Bomb.pkg"]
    assert "Release.zip/lib.dylib" in {i.path for i in report.errors}


@pytest.mark.parametrize(
    ("toc", "reason"),
    [
        (b"<xar><toc><file><name>a", "ParseError"),
        (b"<xar><toc></xar>", "ParseError"),
        (b'<!DOCTYPE x [<!ENTITY a "aaaa">]><xar><toc/></xar>', "declares a DTD"),
        (b"<xar/>", "has no <toc>"),
        (b"\xff\xfe garbage", "ParseError"),
    ],
)
def test_malformed_toc_is_refused_in_one_line(
    tmp_path: Path, check: Callable[..., PreflightReport], toc: bytes, reason: str
) -> None:
    pkg = xar_with_toc(toc)
    with pytest.raises(PreflightInputError, match=reason):
        check(write(tmp_path / "Bad.pkg", pkg))
    report = check(write(tmp_path / "Bad.zip", zip_bytes({"Bad.pkg": pkg}, compression=0)))
    assert reason in unread(report)["Bad.zip/Bad.pkg"]


def test_toc_element_and_depth_limits(
    tmp_path: Path, check: Callable[..., PreflightReport]
) -> None:
    many = b"<xar><toc>" + b"<file><name>x</name><type>file</type></file>" * 500 + b"</toc></xar>"
    with pytest.raises(PreflightInputError, match="more than 1,000 elements"):
        check(write(tmp_path / "Many.pkg", xar_with_toc(many)), max_toc_elements=1000)
    deep = (
        b"<xar><toc>"
        + b"<file><name>d</name><type>directory</type>" * 100
        + b"</file>" * 100
        + b"</toc></xar>"
    )
    with pytest.raises(PreflightInputError, match="nested more than 64 deep"):
        check(write(tmp_path / "Deep.pkg", xar_with_toc(deep)))


def test_bad_heap_fields_are_an_error_on_that_entry(
    tmp_path: Path, check: Callable[..., PreflightReport]
) -> None:
    lib = unsigned_lib()
    toc = (
        b"<xar><toc>"
        b"<file><name>bad</name><type>file</type><data><offset>-5</offset>"
        b"<length>10</length></data></file>"
        b"<file><name>lib</name><type>file</type><data><offset>0</offset>"
        b"<length>%d</length></data></file>"
        b"</toc></xar>" % len(lib)
    )
    report = check(write(tmp_path / "Odd.pkg", xar_with_toc(toc, heap=lib)))
    assert "'-5' is not a byte count" in unread(report)["Odd.pkg/bad"]
    assert "Odd.pkg/lib" in {i.path for i in report.errors if i.message != NOT_READ}


# --- payloads: pbzx and cpio ----------------------------------------------------------------


def odc_with_negative_size() -> bytes:
    entry = bytearray(cpio_odc({"./bin/tool": unsigned_lib()}))
    entry[65:76] = b"-0000000001"  # the odc file-size field; int() alone would accept it
    return bytes(entry)


@pytest.mark.parametrize(
    ("payload", "limits", "reason"),
    [
        (lambda: pbzx_claiming(1 << 40), {}, "pbzx chunk claims 1,099,511,627,776 bytes"),
        (  # 8 KiB that inflate to 8 MiB in one chunk
            lambda: pbzx_inflating(inflated_mib=8),
            {"max_pbzx_chunk": 1 << 20},
            "pbzx chunk inflates to more than 1,048,576 bytes",
        ),
        (
            lambda: gzip_bytes(cpio_giant_name()),
            {},
            "cpio entry name of 4,294,967,295 bytes (limit 4,096)",
        ),
        (odc_with_negative_size, {}, "is not a base-8 number"),
    ],
    ids=["pbzx-claim", "pbzx-bomb", "cpio-name", "cpio-negative-size"],
)
def test_hostile_payload_is_an_error_on_the_payload(
    tmp_path: Path,
    check: Callable[..., PreflightReport],
    payload: Callable[[], bytes],
    limits: dict[str, int],
    reason: str,
) -> None:
    report = check(write(tmp_path / "Game.pkg", pkg_with_payload(payload())), **limits)
    assert reason in unread(report)["Game.pkg/Game-Component.pkg Contents/Payload"]


def test_decompression_budget_stops_a_zip_bomb_in_a_payload(
    tmp_path: Path, check: Callable[..., PreflightReport]
) -> None:
    payload = gzip_bytes(cpio_newc({"./zeros": b"\x00" * (32 << 20), "./lib": unsigned_lib()}))
    report = check(
        write(tmp_path / "Game.pkg", pkg_with_payload(payload)),
        expansion_grace=4 << 20,
        expansion_ratio=10,
    )
    stopped = [i for i in report.errors if i.message == msg.SCAN_STOPPED]
    assert [i.path for i in stopped] == ["Game.pkg"]
    assert "decompressed data would exceed" in (stopped[0].detail or "")


# --- zips -----------------------------------------------------------------------------------


def test_nested_deflated_zip_bomb_is_neither_held_nor_spooled(
    tmp_path: Path, check: Callable[..., PreflightReport]
) -> None:
    """66 KB that inflate to a 64 MiB zip: stopped by the budget before any of it is kept."""
    bomb = write(tmp_path / "Bomb.zip", deflated_zip_bomb(inner_mib=64))
    assert bomb.stat().st_size < 200_000
    report = check(bomb, expansion_grace=8 << 20, expansion_ratio=10, max_spool_bytes=0)
    assert [i.message for i in report.errors] == [msg.SCAN_STOPPED]


def test_nested_deflated_zip_is_read_in_place_within_the_budget(
    tmp_path: Path, check: Callable[..., PreflightReport]
) -> None:
    """No spool at all (max_spool_bytes=0): zipfile's member stream is seekable."""
    inner = zip_bytes(
        {"lib/native.jnilib": unsigned_lib(), "a.bin": b"\x01" * 200_000}, compression=8
    )
    archive = write(
        tmp_path / "App.zip", zip_bytes({"App.app/Contents/Java/app.jar": inner}, compression=8)
    )
    report = check(archive, max_spool_bytes=0)
    assert {i.path for i in report.errors} == {
        "App.zip/App.app/Contents/Java/app.jar/lib/native.jnilib"
    }


def test_zip_in_a_payload_larger_than_the_spool_is_an_error(
    tmp_path: Path, check: Callable[..., PreflightReport]
) -> None:
    jar = zip_bytes({"big.bin": b"\x02" * (2 << 20), "lib.dylib": unsigned_lib()}, compression=0)
    pkg = pkg_with_payload(gzip_bytes(cpio_odc({"./opt/app.jar": jar})))
    report = check(write(tmp_path / "Game.pkg", pkg), max_spool_bytes=1 << 20)
    assert (
        "needs more than 1 MiB of temporary space"
        in unread(report)["Game.pkg/Game-Component.pkg Contents/Payload/opt/app.jar"]
    )


def test_400_nested_zips_stop_at_the_depth_limit(
    tmp_path: Path, check: Callable[..., PreflightReport]
) -> None:
    report = check(write(tmp_path / "Deep.zip", nested_stored_zips(400)))
    [error] = report.errors
    assert error.message == NOT_READ
    assert error.path.count(".zip") == 18  # Deep.zip, then 16 opened levels, then the refused one
    assert "archives nested more than 16 deep" in (error.detail or "")


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (zip_with_bad_member_offset, "no local header at offset 2147483632"),
        (zip_with_unknown_compression, "compression method is not supported"),
    ],
)
def test_unreadable_zip_member_is_an_error_not_a_pass(
    tmp_path: Path, check: Callable[..., PreflightReport], build: Callable[[], bytes], reason: str
) -> None:
    # Formerly a warning and exit 0: the member holds code that was never checked.
    report = check(write(tmp_path / "Game.zip", build()))
    assert report.has_errors
    assert reason in unread(report)["Game.zip/Game.app/Contents/MacOS/Game"]


def test_encrypted_member_is_an_error(
    tmp_path: Path, check: Callable[..., PreflightReport]
) -> None:
    data = bytearray(zip_bytes({"Game.app/Contents/MacOS/Game": unsigned_lib()}, compression=0))
    for signature, flag_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(signature)
        data[at + flag_offset] |= 1
    report = check(write(tmp_path / "Game.zip", bytes(data)))
    assert unread(report) == {"Game.zip/Game.app/Contents/MacOS/Game": "the member is encrypted"}


def test_a_member_name_that_cannot_be_extracted_is_an_error_naming_it(
    tmp_path: Path, check: Callable[..., PreflightReport]
) -> None:
    report = check(write(tmp_path / "Odd.zip", zip_with_empty_member_name(unsigned_lib())))
    assert [(i.path, i.message, i.detail) for i in report.errors] == [
        ("Odd.zip/", msg.UNEXTRACTABLE_NAME, "member name '': the name is empty"),
        ("Odd.zip", msg.NO_CODE_FOUND, None),  # the one library was in the unnamed member
    ]
    escaping = check(write(tmp_path / "Escape.zip", zip_bytes(
        {"Game.app/../../.profile": b"x", "/etc/passwd": b"y", "Game.app/ok.txt": b"z"},
        compression=0)))
    assert [(i.path, i.detail) for i in escaping.errors if i.message == msg.UNEXTRACTABLE_NAME] == [
        ("Escape.zip/Game.app/../../.profile",
         "member name 'Game.app/../../.profile': a '..' in the name reaches outside the archive"),
        ("Escape.zip//etc/passwd", "member name '/etc/passwd': the name is an absolute path"),
    ]


def test_too_many_zip_entries(tmp_path: Path, check: Callable[..., PreflightReport]) -> None:
    many = zip_bytes({f"f{i}": b"" for i in range(101)}, compression=0)
    with pytest.raises(PreflightInputError, match=r"zip holds 101\+ entries"):
        check(write(tmp_path / "Many.zip", many), max_open_zip_entries=100)
    outer = write(tmp_path / "Outer.zip", zip_bytes({"inner.zip": many}, compression=0))
    assert "101+ entries" in unread(check(outer, max_open_zip_entries=100))["Outer.zip/inner.zip"]


def test_member_and_issue_limits(tmp_path: Path, check: Callable[..., PreflightReport]) -> None:
    archive = write(
        tmp_path / "Libs.zip",
        zip_bytes({f"lib{i}.dylib": unsigned_lib() for i in range(20)}, compression=0),
    )
    stopped = check(archive, max_members=10)
    assert stopped.issues[-1].message == msg.SCAN_STOPPED
    assert stopped.files_scanned == 11

    capped = check(archive, max_issues=5)
    assert len(capped.issues) == 6
    assert capped.issues[-1].message == msg.ISSUES_OMITTED
    # 20 libraries x (not signed, no timestamp, no runtime warning) = 60 issues, 5 listed.
    omitted = re.fullmatch(
        r"(\d+) more error\(s\) and (\d+) more warning\(s\) are not listed",
        capped.issues[-1].detail or "",
    )
    assert omitted and int(omitted[1]) + int(omitted[2]) == 55
    assert capped.has_errors


def test_control_characters_in_names_are_escaped(
    tmp_path: Path, check: Callable[..., PreflightReport]
) -> None:
    name = "Game.app/\x1b]0;owned\x07lib.dylib"
    report = check(write(tmp_path / "Game.zip", zip_bytes({name: unsigned_lib()}, compression=0)))
    text = report.render_text()
    assert "\x1b" not in text and "\x07" not in text
    assert "Game.app/\\x1b]0;owned\\x07lib.dylib" in text
    assert "\x1b" not in report.to_json()


# --- signatures -----------------------------------------------------------------------------


def signed(signing: Signing) -> bytes:
    return thin_macho(SliceSpec(cputype=CPU_X86_64, signing=signing))


def developer_id(pki: Pki, **overrides: object) -> Signing:
    signing = Signing(
        identity=pki.developer_id_leaf, chain=[pki.developer_id_ca.cert, pki.root.cert]
    )
    for key, value in overrides.items():
        setattr(signing, key, value)
    return signing


def patch_certificate(binary: bytes, cert_der: bytes, old: bytes, new: bytes) -> bytes:
    """``binary`` with ``old`` replaced by ``new`` (same length) inside one embedded certificate."""
    assert len(old) == len(new) and old in cert_der
    assert binary.count(cert_der) == 1
    return binary.replace(cert_der, cert_der.replace(old, new, 1))


EC_PUBLIC_KEY_OID = bytes.fromhex("06072a8648ce3d0201")
UNKNOWN_KEY_OID = bytes.fromhex("06072a8648ce3d0263")


@pytest.mark.parametrize("which", ["leaf", "ca"])
@pytest.mark.parametrize(
    ("old", "new"),
    [
        (bytes.fromhex("a003020102"), bytes.fromhex("a003020107")),  # X.509 version 8
        (EC_PUBLIC_KEY_OID, UNKNOWN_KEY_OID),  # a key algorithm nobody knows
        (b"Developer ID Certification Authority"[:6], b"\xff\xfe\xfd\xfc\xfb\xfa"),  # bad UTF-8
    ],
)
def test_hostile_certificates_are_errors_not_tracebacks(
    tmp_path: Path,
    check: Callable[..., PreflightReport],
    pki: Pki,
    which: str,
    old: bytes,
    new: bytes,
) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    cert = (pki.developer_id_leaf if which == "leaf" else pki.developer_id_ca).cert
    cert_der = cert.public_bytes(Encoding.DER)
    if old not in cert_der:
        pytest.skip("this certificate has no such field")
    binary = patch_certificate(signed(developer_id(pki)), cert_der, old, new)
    archive = write(tmp_path / "Game.zip", zip_bytes({"Game": binary}, compression=0))
    report = check(archive)
    assert report.has_errors
    assert NOT_READ not in {i.message for i in report.issues}, report.render_text()
    assert {i.message for i in report.errors} & {msg.NOT_DEVELOPER_ID, msg.INVALID_SIGNATURE}


# --- entitlements ---------------------------------------------------------------------------


def plist_with_get_task_allow() -> bytes:
    return plistlib.dumps({GET_TASK_ALLOW: True}, fmt=plistlib.FMT_XML)


@pytest.mark.parametrize(
    "payload",
    [
        b"\n" + plist_with_get_task_allow(),  # a released Node.js binary has this
        b"  \r\n\t" + plist_with_get_task_allow() + b"\n\x00\x00",
        b"\xef\xbb\xbf\n" + plist_with_get_task_allow(),
        plist_with_get_task_allow().decode().replace("UTF-8", "UTF-16").encode("utf-16"),
        plistlib.dumps({GET_TASK_ALLOW: True}, fmt=plistlib.FMT_BINARY),
    ],
    ids=["newline", "padding", "bom", "utf-16", "binary"],
)
def test_entitlements_parsed_as_leniently_as_apple(
    tmp_path: Path, check: Callable[..., PreflightReport], pki: Pki, payload: bytes
) -> None:
    binary = signed(developer_id(pki, entitlements_xml_raw=payload))
    report = check(write(tmp_path / "node", binary))
    assert [i.message for i in report.errors] == [msg.GET_TASK_ALLOW]


@pytest.mark.parametrize(
    "payload",
    [
        b"bplist00" + b"\xff" * 40,
        b"<?xml version='1.0' encoding='no-such-codec'?><plist><dict/></plist>",
        b"<plist><dict><key>k</key><date>not a date</date></dict></plist>",
        b"<plist><array>" * 2000 + b"</array></plist>",
    ],
    ids=["bad-binary", "unknown-encoding", "bad-date", "deep"],
)
def test_unreadable_entitlements_still_show_der_get_task_allow(
    tmp_path: Path, check: Callable[..., PreflightReport], pki: Pki, payload: bytes
) -> None:
    signing = developer_id(
        pki, entitlements_xml_raw=payload, entitlements_der={GET_TASK_ALLOW: True}
    )
    report = check(write(tmp_path / "tool", signed(signing)))
    assert {i.message for i in report.errors} == {msg.INVALID_SIGNATURE, msg.GET_TASK_ALLOW}


def test_der_entitlements_bomb_is_bounded(
    tmp_path: Path, check: Callable[..., PreflightReport], pki: Pki
) -> None:
    signing = developer_id(pki, flags=CS_RUNTIME, entitlements_der={GET_TASK_ALLOW: False})
    binary = bytearray(signed(signing))
    der = entitlements_der({GET_TASK_ALLOW: False})
    at = binary.find(der)
    # Indefinite-length nesting far deeper than any real blob.
    nested = (b"\x30\x80" * 200 + b"\x00\x00" * 200)[: len(der) - 8]
    binary[at + 8 : at + 8 + len(nested)] = nested
    report = check(write(tmp_path / "tool", bytes(binary)))
    assert msg.INVALID_SIGNATURE in {i.message for i in report.errors}


def test_top_level_garbage_is_one_line(tmp_path: Path) -> None:
    for name, data in [
        ("a.zip", b"PK\x05\x06" + b"\xff" * 18),
        ("b.pkg", b"xar!" + b"\xff" * 24),
        ("c.pkg", b"xar!\x00\x1c\x00\x01" + b"\x00" * 8 + b"\xff" * 8 + b"\x00" * 4),
    ]:
        with pytest.raises(PreflightInputError) as raised:
            run_preflight(write(tmp_path / name, data))
        assert "\n" not in str(raised.value) and name in str(raised.value)


def test_zip_inside_payload_still_checked_within_limits(
    tmp_path: Path, check: Callable[..., PreflightReport]
) -> None:
    inner = zip_bytes({"lib/native.jnilib": unsigned_lib()}, compression=zipfile.ZIP_DEFLATED)
    pkg = xar({"Payload": gzip_bytes(cpio_odc({"./opt/app/lib.jar": inner}))})
    report = check(write(tmp_path / "Game.pkg", pkg), max_spool_bytes=len(inner))
    assert {i.path for i in report.errors} == {"Game.pkg/Payload/opt/app/lib.jar/lib/native.jnilib"}


# --- folders --------------------------------------------------------------------------------


def test_deep_folders_stop_at_the_depth_limit(
    tmp_path: Path, check: Callable[..., PreflightReport]
) -> None:
    app = tmp_path / "Game.app"
    deep = app.joinpath(*["d"] * 70)
    deep.mkdir(parents=True)
    (deep / "lib.dylib").write_bytes(unsigned_lib())
    (app / "tool").write_bytes(unsigned_lib())
    report = check(app)
    too_deep = unread(report)
    assert list(too_deep) == ["Game.app/" + "/".join(["d"] * 65)]  # the first one too deep
    assert "folders nested more than 64 deep" in next(iter(too_deep.values()))
    assert "Game.app/tool" in {i.path for i in report.errors}


def test_fifo_is_never_opened_for_reading(
    tmp_path: Path, check: Callable[..., PreflightReport]
) -> None:
    """A FIFO (or one swapped in after the listing) would block open() for ever."""
    app = tmp_path / "Game.app"
    app.mkdir()
    os.mkfifo(app / "pipe")
    assert open_regular_file(app / "pipe", follow_symlinks=False) is None
    assert check(app).files_scanned == 0
    with pytest.raises(PreflightInputError, match=r"no such file or folder|not a regular file"):
        check(app / "pipe")


def test_in_the_daemon_a_hard_linked_member_is_reported_not_read(
    tmp_path: Path, check: Callable[..., PreflightReport]
) -> None:
    """Another name of the same file may be outside the allowed roots: preflight, like the
    packaging after it, does not read it."""
    outside = tmp_path / "outside.dylib"
    outside.write_bytes(unsigned_lib())
    app = tmp_path / "root" / "Game.app"
    app.mkdir(parents=True)
    os.link(outside, app / "lib.dylib")
    (app / "tool").write_bytes(unsigned_lib())
    with confine_to([tmp_path / "root"]):
        report = check(app)
    assert list(unread(report)) == ["Game.app/lib.dylib"]
    assert "has 2 hard links" in unread(report)["Game.app/lib.dylib"]
    assert "Game.app/tool" in {i.path for i in report.errors}  # the rest is checked
    assert "Game.app/lib.dylib" in {i.path for i in check(app).errors}  # the CLI reads it


def test_central_directory_size_is_bounded(
    tmp_path: Path, check: Callable[..., PreflightReport]
) -> None:
    """zipfile reads the whole central directory at once: its size is checked first."""
    archive = zip_bytes(
        {f"Game.app/Contents/Resources/f{i}": b"" for i in range(40)}, compression=0
    )
    with pytest.raises(
        PreflightInputError, match="central directory of 3,070 bytes; preflight reads up to 1,024"
    ):
        check(write(tmp_path / "Game.zip", archive), max_zip_directory_bytes=1024)


def test_deeply_nested_der_entitlements(
    tmp_path: Path, check: Callable[..., PreflightReport], pki: Pki
) -> None:
    """Definite-length nesting, 5,000 deep: an invalid signature, not a RecursionError."""
    value = der(0x01, b"\xff")
    for _ in range(5000):
        value = der(0x30, value)
    entry = der(0x30, der(0x0C, GET_TASK_ALLOW.encode()) + value)
    payload = der(0x70, der(0x02, b"\x01") + der(0xB0, entry))
    binary = signed(developer_id(pki, entitlements_der_raw=payload))
    report = check(write(tmp_path / "tool", binary))
    details = [i.detail or "" for i in report.errors if i.message == msg.INVALID_SIGNATURE]
    assert any("nested more than 64 deep" in d for d in details), report.render_text()


def test_overlong_paths_are_refused_not_kept(
    tmp_path: Path, check: Callable[..., PreflightReport]
) -> None:
    """Nested archives with 60,000-character names: every issue would carry a megabyte path."""
    inner = zip_bytes({"x" * 60_000 + ".dylib": unsigned_lib()}, compression=0)
    outer = zip_bytes({"y" * 60_000 + ".jar": inner, "ok.dylib": unsigned_lib()}, compression=0)
    report = check(write(tmp_path / "Long.zip", outer))
    [refused] = [i for i in report.errors if i.message == NOT_READ]
    assert refused.path == "Long.zip/" + "y" * 191 + "…"
    assert refused.detail == "path of 60,013 characters (limit 4,096)"
    assert "Long.zip/ok.dylib" in {i.path for i in report.errors}
    assert max(len(i.path) for i in report.issues) < 300


def test_stream_may_not_exceed_its_declared_size(
    tmp_path: Path, check: Callable[..., PreflightReport]
) -> None:
    heap = zlib.compress(cpio_odc({"./bin/tool": unsigned_lib()}))
    toc = (
        b'<xar><toc><file id="1"><name>Payload</name><type>file</type><data>'
        b"<offset>0</offset><length>%d</length><size>100</size>"
        b'<encoding style="application/x-gzip"/></data></file></toc></xar>' % len(heap)
    )
    report = check(write(tmp_path / "Game.pkg", xar_with_toc(toc, heap)))
    assert (
        "xar entry 'Payload' decompresses to more than the 100 bytes it declares"
        in (unread(report)["Game.pkg/Payload"])
    )


def test_unusable_path_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(PreflightInputError, match=r"cannot be read \(File name too long\)"):
        run_preflight(tmp_path / ("a/" * 3000))


def test_toc_with_an_unknown_encoding(tmp_path: Path) -> None:
    """Found by the fuzzer: expat raises LookupError for the encoding a declaration names."""
    pkg = xar_with_toc(b'<?xml version="1.0" encoding="UTF-f"?><xar><toc/></xar>')
    with pytest.raises(PreflightInputError, match="declares an unknown encoding"):
        run_preflight(write(tmp_path / "Odd.pkg", pkg))
