"""A seeded mutation fuzzer over the preflight fixtures, and every crash it has found.

Each fixture is a valid input (signed Mach-O, zips, nested jar, .pkg with gzip and pbzx
payloads, a xar table of contents, entitlements) with one layer exposed to mutation: bit flips,
interesting integers written over fields, bytes deleted, duplicated or truncated. The layer is
mutated *before* the outer layers are built, so the mutations reach parsers behind
decompressors and checksums; signature blobs (CMS, CodeDirectory, DER entitlements) are mutated
in place, keeping their length, so the SuperBlob still leads to them. The rule checked on every case is the issue 10 one: a one-line
``PreflightInputError`` or a report, never another exception, never an "internal error" in a
report, and output that can always be printed.

Cases are deterministic for a seed (``PREFLIGHT_FUZZ_SEED``, default fixed) and the count is
sized to take well under a minute in all. Inputs that ever crashed are kept as files in
``fuzz_regressions/`` and replayed first.
"""

from __future__ import annotations

import os
import plistlib
import random
import struct
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from hostile_inputs import xar_with_toc
from preflight_builders import (
    CPU_X86_64,
    MH_DYLIB,
    Pki,
    Signing,
    SliceSpec,
    cpio_newc,
    cpio_odc,
    fat_macho,
    gzip_bytes,
    make_identity,
    pbzx,
    thin_macho,
    xar,
    zip_bytes,
)
from seal_builders import Bundle, CodeSigning, Link, signed_xar

from uploader.preflight import PreflightInputError, run_preflight
from uploader.preflight import messages as msg
from uploader.preflight.limits import DEFAULT_LIMITS

SEED = int(os.environ.get("PREFLIGHT_FUZZ_SEED", "20261129"))
CASES_PER_FIXTURE = int(os.environ.get("PREFLIGHT_FUZZ_CASES", "500"))
REGRESSIONS = Path(__file__).with_name("fuzz_regressions")
# Small bounds keep each case cheap; the rules are the same as at the default limits.
FUZZ_LIMITS = replace(
    DEFAULT_LIMITS, expansion_grace=32 << 20, max_spool_bytes=8 << 20, max_pbzx_chunk=8 << 20
)
INTERESTING_32 = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)

Mutate = Callable[[bytes], bytes]


def mutator(rng: random.Random) -> Mutate:
    def mutate(data: bytes) -> bytes:
        out = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            if not out:
                out = bytearray(rng.randbytes(rng.randint(1, 16)))
                continue
            at = rng.randrange(len(out))
            choice = rng.randrange(6)
            if choice == 0:
                out[at] ^= 1 << rng.randrange(8)
            elif choice == 1:
                out[at] = rng.choice((0x00, 0x01, 0x7F, 0x80, 0xFF, 0x3C, 0x30))
            elif choice == 2 and at + 4 <= len(out):
                order = rng.choice("<>")
                struct.pack_into(order + "I", out, at, rng.choice(INTERESTING_32))
            elif choice == 3:
                del out[at : at + rng.randint(1, 64)]
            elif choice == 4:
                piece = out[at : at + rng.randint(1, 64)]
                out[at:at] = piece * rng.randint(1, 8)
            else:
                del out[at:]
        return bytes(out)

    return mutate


def fixtures(pki: Pki) -> dict[str, Callable[[Mutate], tuple[str, bytes]]]:
    signing = Signing(
        identity=pki.developer_id_leaf,
        chain=[pki.developer_id_ca.cert, pki.root.cert],
        entitlements_xml={"com.apple.security.cs.allow-jit": True},
        entitlements_der={"com.apple.security.get-task-allow": False},
    )
    app = fat_macho([SliceSpec(cputype=CPU_X86_64, signing=signing), SliceSpec(signing=signing)])
    lib = thin_macho(SliceSpec(cputype=CPU_X86_64, filetype=MH_DYLIB, signing=signing))
    jar = zip_bytes(
        {"native/lib.jnilib": lib, "a.class": b"\xca\xfe\xba\xbe\x00\x00\x00\x34"}, compression=8
    )
    cpio = cpio_odc({"./Applications/Game.app/Contents/MacOS/Game": app, "./readme": b"hi"})
    newc = cpio_newc({"./usr/local/bin/tool": lib, "./usr/local/lib/x.jar": jar})
    toc = (
        b'<?xml version="1.0" encoding="UTF-8"?><xar><toc><file id="1"><name>Payload</name><type>file</type>'
        b"<data><offset>0</offset><length>%d</length><size>%d</size>"
        b'<encoding style="application/octet-stream"/></data></file></toc></xar>'
    )
    plain_payload = cpio_odc({"./bin/tool": lib})
    plist = plistlib.dumps({"com.apple.security.get-task-allow": True})
    # Signature verification (issue 13): a sealed bundle, and an installer-signed package.
    code_signing = CodeSigning(identity=pki.developer_id_leaf, chain=[pki.developer_id_ca.cert])
    bundle = Bundle()
    bundle.files["Game.app/Contents/Resources/a.txt"] = b"a"
    bundle.files["Game.app/Contents/Resources/current"] = Link("a.txt")
    bundle.seal("Game.app", "Game", code_signing)
    seal_path = "Game.app/Contents/_CodeSignature/CodeResources"
    installer = make_identity(
        "Developer ID Installer: Test Studio (TEAM123456)",
        issuer=pki.developer_id_ca,
        ou="TEAM123456",
        extension_oids=("1.2.840.113635.100.6.1.14",),
    )
    bundle_cpio = cpio_odc(
        {f"./Applications/{p}": d for p, d in bundle.files.items() if isinstance(d, bytes)}
    )

    def sealed(m: Mutate) -> tuple[str, bytes]:
        files = dict(bundle.files)
        seal = files[seal_path]
        assert isinstance(seal, bytes)
        files[seal_path] = m(seal)
        return "Game.zip", Bundle(files).zip_bytes()

    def in_blob(magic: int, m: Mutate) -> tuple[str, bytes]:
        """Mutate one signature blob of the first slice in place (same length, so the
        SuperBlob's offsets still lead to it and the mutation reaches its parser)."""
        start = app.index(struct.pack(">I", magic), 0x1000)
        end = start + struct.unpack_from(">I", app, start + 4)[0]
        body = app[start + 8 : end]
        mutated = (m(body) + body)[: len(body)]
        return "Game", app[: start + 8] + mutated + app[end:]

    def entitlements(m: Mutate) -> tuple[str, bytes]:
        raw = m(plist)
        return "tool", thin_macho(
            SliceSpec(signing=replace(signing, entitlements_xml=None, entitlements_xml_raw=raw))
        )

    return {
        "macho": lambda m: ("Game", m(app)),
        "signature": lambda m: ("Game", app[:0x1000] + m(app[0x1000:])),
        "entitlements": entitlements,
        "cms": lambda m: in_blob(0xFADE0B01, m),
        "code-directory": lambda m: in_blob(0xFADE0C02, m),
        "der-entitlements": lambda m: in_blob(0xFADE7172, m),
        "zip-stored": lambda m: (
            "Game.zip",
            m(zip_bytes({"Game.app/Contents/MacOS/Game": app}, compression=0)),
        ),
        "zip-deflated": lambda m: (
            "Game.zip",
            m(zip_bytes({"Game.app/Contents/MacOS/Game": app, "lib.dylib": lib}, compression=8)),
        ),
        "zip-member": lambda m: (
            "Game.zip",
            zip_bytes({"Game.app/Contents/MacOS/Game": m(app)}, compression=8),
        ),
        "nested-jar": lambda m: (
            "App.zip",
            zip_bytes({"App.app/Contents/Java/app.jar": m(jar)}, compression=8),
        ),
        "pkg": lambda m: (
            "Game.pkg",
            m(xar({"Game.pkg/Payload": gzip_bytes(cpio), "Distribution": b"<x/>"})),
        ),
        "pkg-cpio": lambda m: ("Game.pkg", xar({"Game.pkg/Payload": gzip_bytes(m(cpio))})),
        "pkg-pbzx": lambda m: ("Game.pkg", xar({"Payload": m(pbzx(newc, chunk=1 << 16))})),
        "pkg-newc": lambda m: ("Game.pkg", xar({"Payload": pbzx(m(newc), chunk=1 << 16)})),
        "toc": lambda m: (
            "Game.pkg",
            xar_with_toc(m(toc % (len(plain_payload), len(plain_payload))), plain_payload),
        ),
        "sealed-resources": sealed,
        "sealed-app-zip": lambda m: ("Game.zip", m(bundle.zip_bytes(compression=0))),
        "signed-pkg": lambda m: (
            "Game.pkg",
            m(
                signed_xar(
                    {"Payload": gzip_bytes(bundle_cpio)}, installer, [pki.developer_id_ca.cert]
                )
            ),
        ),
        "pkg-sealed-cpio": lambda m: (
            "Game.pkg",
            signed_xar(
                {"Payload": gzip_bytes(m(bundle_cpio))}, installer, [pki.developer_id_ca.cert]
            ),
        ),
        "pkg-in-zip": lambda m: (
            "Release.zip",
            zip_bytes({"Installer.pkg": m(xar({"Payload": gzip_bytes(cpio)}))}, compression=8),
        ),
    }


def check_one(path: Path, pki: Pki) -> None:
    """The rule every input must satisfy."""
    try:
        report = run_preflight(path, trust_anchors=[pki.root.cert], limits=FUZZ_LIMITS)
    except PreflightInputError as exc:
        text = str(exc)
        assert "\n" not in text and "internal error" not in text, text
        text.encode("utf-8")
        return
    internal = [i for i in report.issues if "internal error" in (i.detail or "")]
    assert not internal, internal
    report.render_text().encode("utf-8")
    report.to_json().encode("utf-8")


def test_fuzz_regressions_are_there() -> None:
    """A missing or emptied folder would parametrize the next test with nothing: zero cases run."""
    assert REGRESSIONS.is_dir(), f"{REGRESSIONS} is missing"
    assert sorted(REGRESSIONS.glob("*--*")), f"{REGRESSIONS} holds no <what it found>--<name> case"


@pytest.mark.parametrize("regression", sorted(REGRESSIONS.glob("*--*")), ids=lambda p: p.name)
def test_fuzz_regressions(regression: Path, tmp_path: Path, pki: Pki) -> None:
    name = regression.name.split("--", 1)[1]  # "<what it found>--<file name preflight sees>"
    path = tmp_path / name
    path.write_bytes(regression.read_bytes())
    check_one(path, pki)


@pytest.mark.timeout(240)
def test_fuzz_fixtures(tmp_path: Path, pki: Pki) -> None:
    failures: list[str] = []
    for label, build in fixtures(pki).items():
        rng = random.Random(f"{SEED}:{label}")
        for case in range(CASES_PER_FIXTURE):
            name, data = build(mutator(rng))
            path = tmp_path / name
            path.write_bytes(data)
            try:
                check_one(path, pki)
            except Exception as exc:  # AssertionError included: keep going, report all
                kept = tmp_path / f"crash-{label}-{case}--{name}"
                kept.write_bytes(data)
                failures.append(f"{label} case {case} ({kept}): {type(exc).__name__}: {exc}"[:500])
    assert not failures, "\n".join(failures)


def test_unsigned_fixture_sanity(tmp_path: Path, pki: Pki) -> None:
    """The fixtures are valid before mutation: the fuzzer starts from inputs that parse."""
    identity: Mutate = lambda data: data  # noqa: E731
    for label, build in fixtures(pki).items():
        name, data = build(identity)
        path = tmp_path / name
        path.write_bytes(data)
        report = run_preflight(path, trust_anchors=[pki.root.cert], limits=FUZZ_LIMITS)
        assert report.macho_files >= 1, label
        assert msg.CONTAINER_NOT_INSPECTED not in {i.message for i in report.issues}, label
