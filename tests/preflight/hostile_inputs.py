"""Hostile archives for the preflight safety tests, built byte by byte (never downloaded).

Each builder reproduces one finding of the adversarial review (issue 10): a bomb that made
preflight use gigabytes, or an input that ended in a traceback or a false PASS. Sizes are
parameters so the in-process tests stay fast (with tightened ``Limits``) while the CLI test
uses bombs large enough to matter at the default limits.
"""

from __future__ import annotations

import io
import lzma
import plistlib
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from preflight_builders import (
    CPU_X86_64,
    MH_DYLIB,
    SliceSpec,
    cpio_newc,
    gzip_bytes,
    thin_macho,
    xar,
    zip_bytes,
)

# The test property under which the CLI test records each run's figures for the terminal summary.
HOSTILE_FIGURES = "hostile_preflight_figures"

_MiB = 1 << 20
_XAR_HEADER = struct.Struct(">4sHHQQI")


def unsigned_lib() -> bytes:
    return thin_macho(SliceSpec(cputype=CPU_X86_64, filetype=MH_DYLIB))


def _deflate_repeated(prefix: bytes, block: bytes, count: int, suffix: bytes) -> bytes:
    compressor = zlib.compressobj(9)
    out = [compressor.compress(prefix)]
    out.extend(compressor.compress(block) for _ in range(count))
    out += [compressor.compress(suffix), compressor.flush()]
    return b"".join(out)


def toc_bomb_pkg(inflated_mib: int) -> bytes:
    """A .pkg whose table of contents declares 4 KiB but inflates to ``inflated_mib`` MiB."""
    toc = _deflate_repeated(
        b'<?xml version="1.0"?><xar><toc>', b" " * _MiB, inflated_mib, b"</toc></xar>"
    )
    return _XAR_HEADER.pack(b"xar!", 28, 1, len(toc), 4096, 0) + toc


def xar_with_toc(toc_xml: bytes, heap: bytes = b"") -> bytes:
    toc = zlib.compress(toc_xml)
    return _XAR_HEADER.pack(b"xar!", 28, 1, len(toc), len(toc_xml), 0) + toc + heap


def pbzx_claiming(length: int) -> bytes:
    """A pbzx payload whose only chunk claims ``length`` bytes."""
    return b"pbzx" + struct.pack(">Q", 1 << 24) + struct.pack(">QQ", 16 * _MiB, length) + b"x" * 64


def pbzx_inflating(inflated_mib: int) -> bytes:
    """A pbzx payload whose only chunk is small but inflates to ``inflated_mib`` MiB: a cpio
    entry of that many zeros, so the payload parses as far as anyone reads it."""
    compressor = lzma.LZMACompressor(lzma.FORMAT_XZ, preset=0)
    size = inflated_mib * _MiB
    fields = [1, 0o100644, 0, 0, 1, 0, size, 0, 0, 0, 0, len(b"./zeros\x00"), 0]
    header = b"070701" + b"".join(b"%08X" % f for f in fields) + b"./zeros\x00"
    parts = [compressor.compress(header + b"\x00" * (-len(header) % 4))]
    block = b"\x00" * _MiB
    parts.extend(compressor.compress(block) for _ in range(inflated_mib))
    chunk = b"".join(parts) + compressor.flush()
    return b"pbzx" + struct.pack(">Q", 1 << 24) + struct.pack(">QQ", 16 * _MiB, len(chunk)) + chunk


def cpio_giant_name(namesize: int = 0xFFFFFFFF) -> bytes:
    """A newc cpio header claiming a ``namesize``-byte name, then a little data."""
    fields = [1, 0o100644, 0, 0, 1, 0, 0, 0, 0, 0, 0, namesize, 0]
    return b"070701" + b"".join(b"%08X" % f for f in fields) + b"A" * 4096


def pkg_with_payload(payload: bytes) -> bytes:
    return xar({"Game-Component.pkg/Payload": payload})


def nested_stored_zips(levels: int) -> bytes:
    """``levels`` zips, each stored inside the next; the innermost holds an unsigned dylib."""
    data = zip_bytes({"lib.dylib": unsigned_lib()}, compression=zipfile.ZIP_STORED)
    for level in range(levels):
        data = zip_bytes({f"l{level}.zip": data}, compression=zipfile.ZIP_STORED)
    return data


def _zip_parts(
    name: bytes, method: int, crc: int, compressed: int, size: int, offset: int = 0
) -> tuple[bytes, bytes]:
    """(local header + name, central-directory entry + name) of a single-member zip."""
    local = struct.pack(
        "<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0, crc, compressed, size, len(name), 0
    )
    central = struct.pack(
        "<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, method, 0, 0, crc, compressed, size,
        len(name), 0, 0, 0, 0, 0, offset,
    )  # fmt: skip
    return local + name, central + name


def _end_record(central: bytes, central_offset: int) -> bytes:
    return struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central), central_offset, 0)


def _stored_zip_of_zeros(mib: int) -> Iterator[bytes]:
    """A zip with one stored member of ``mib`` MiB of zeros, yielded in pieces."""
    block = b"\x00" * _MiB
    crc = 0
    for _ in range(mib):
        crc = zlib.crc32(block, crc)
    size = mib * _MiB
    local, central = _zip_parts(b"big.bin", 0, crc, size, size)
    yield local
    for _ in range(mib):
        yield block
    yield central + _end_record(central, len(local) + size)


def deflated_zip_bomb(inner_mib: int, layers: int = 1) -> bytes:
    """A zip holding, deflated, a zip that is ``inner_mib`` MiB once inflated (mostly zeros),
    wrapped ``layers`` times: small on disk, large for anything that inflates it whole."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    crc, size = 0, 0
    parts = []
    for piece in _stored_zip_of_zeros(inner_mib):
        crc, size = zlib.crc32(piece, crc), size + len(piece)
        parts.append(compressor.compress(piece))
    parts.append(compressor.flush())
    deflated = b"".join(parts)
    local, central = _zip_parts(b"inner.zip", 8, crc, len(deflated), size)
    data = local + deflated + central + _end_record(central, len(local) + len(deflated))
    for level in range(1, layers):
        data = zip_bytes({f"layer{level}.zip": data}, compression=zipfile.ZIP_DEFLATED)
    return data


def macho_with_signature_of(size: int) -> bytes:
    """An x86_64 executable whose LC_CODE_SIGNATURE claims ``size`` bytes (all zeros)."""
    commands = struct.pack("<IIII", 0x1D, 16, 4096, size)
    header = struct.pack("<IiiIIIII", 0xFEEDFACF, CPU_X86_64, 3, 2, 1, len(commands), 0, 0)
    head = header + commands
    return head + b"\x00" * (4096 - len(head) + size)


def patch_central_directory(data: bytes, field_offset: int, fmt: str, value: int) -> bytes:
    """Overwrite one field of every central-directory header (offset from its signature)."""
    out = bytearray(data)
    at = out.find(b"PK\x01\x02")
    while at >= 0:
        struct.pack_into(fmt, out, at + field_offset, value)
        at = out.find(b"PK\x01\x02", at + 4)
    return bytes(out)


def zip_with_bad_member_offset() -> bytes:
    data = zip_bytes({"Game.app/Contents/MacOS/Game": unsigned_lib()}, compression=0)
    return patch_central_directory(data, 42, "<L", 0x7FFFFFF0)


def zip_with_unknown_compression() -> bytes:
    data = zip_bytes({"Game.app/Contents/MacOS/Game": unsigned_lib()}, compression=8)
    data = patch_central_directory(data, 10, "<H", 99)
    out = bytearray(data)
    struct.pack_into("<H", out, 8, 99)  # the local header's method too
    return bytes(out)


def zip_with_empty_member_name(content: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo(""), content)
    return buffer.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def bundle_of_many_files(count: int) -> bytes:
    """A gzip cpio payload of one sealed-looking Game.app with ``count`` empty resources:
    every one would be remembered for the seal without ``Limits.max_seal_records``."""
    files = {f"./Game.app/Contents/Resources/r{n:07d}": b"" for n in range(count)}
    files["./Game.app/Contents/_CodeSignature/CodeResources"] = b"<plist/>"
    files["./Game.app/Contents/MacOS/Game"] = unsigned_lib()
    return gzip_bytes(cpio_newc(files))


def bundles_with_giant_seals(bundles: int, seal_mib: int) -> bytes:
    """A deflated zip of ``bundles`` .app folders, each sealed by a CodeResources plist of
    ``seal_mib`` MiB of tiny strings (a few KiB compressed): parsed, each would cost far more
    memory than its size without ``Limits.max_seal_content_total``."""
    seal = b"<plist><array>" + b"<string>x</string>" * (seal_mib * _MiB // 18) + b"</array></plist>"
    files: dict[str, bytes] = {}
    for n in range(bundles):
        root = f"App{n}.app/Contents"
        files[f"{root}/Info.plist"] = plistlib.dumps({"CFBundleExecutable": "App"})
        files[f"{root}/MacOS/App"] = unsigned_lib()
        files[f"{root}/_CodeSignature/CodeResources"] = seal
    return zip_bytes(files, compression=zipfile.ZIP_DEFLATED)
