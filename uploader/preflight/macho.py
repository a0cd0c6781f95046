"""Mach-O and universal (fat) headers: find each architecture slice and its facts.

Sources: ``<mach-o/loader.h>`` / ``<mach-o/fat.h>`` as mirrored in ronaldoussoren/macholib
``macholib/mach_o.py``. Fat headers are big-endian; a thin header is in its slice's byte order.
Slices are returned in file order so forward-only sources can serve every later read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum

from uploader.preflight.source import ByteSource

MH_MAGIC, MH_MAGIC_64 = 0xFEEDFACE, 0xFEEDFACF
FAT_MAGIC, FAT_MAGIC_64 = 0xCAFEBABE, 0xCAFEBABF
_MAX_FAT_ARCHS = 30  # Java class files share 0xCAFEBABE; their next word is >= 45 (major 45.0)
_MAX_LOAD_COMMANDS_BYTES = 16 << 20

MH_EXECUTE, MH_DYLIB, MH_DYLINKER, MH_BUNDLE, MH_KEXT_BUNDLE = 2, 6, 7, 8, 0xB
# File types the notary service treats as code; object files and dSYM companions are not.
CODE_FILETYPES = frozenset({MH_EXECUTE, MH_DYLIB, MH_DYLINKER, MH_BUNDLE, MH_KEXT_BUNDLE})

LC_CODE_SIGNATURE = 0x1D
LC_VERSION_MIN_MACOSX = 0x24
LC_BUILD_VERSION = 0x32
PLATFORM_MACOS, PLATFORM_MACCATALYST = 1, 6

_CPU_ARCH_ABI64 = 0x01000000
_CPU_NAMES = {
    7: "i386",
    7 | _CPU_ARCH_ABI64: "x86_64",
    12: "arm",
    12 | _CPU_ARCH_ABI64: "arm64",
    12 | 0x02000000: "arm64_32",
    18: "ppc",
    18 | _CPU_ARCH_ABI64: "ppc64",
}


class Kind(Enum):
    OTHER = "other"
    MACHO = "macho"
    ZIP = "zip"
    XAR = "xar"


class MachOFormatError(ValueError):
    """The headers or load commands do not parse."""


def classify(head: bytes) -> Kind:
    """What the first 8 bytes of a file say it is (never the name or mode bits)."""
    if len(head) < 4:
        return Kind.OTHER
    magic_be = int.from_bytes(head[:4], "big")
    if magic_be in (FAT_MAGIC, FAT_MAGIC_64):
        count = int.from_bytes(head[4:8], "big") if len(head) >= 8 else 0
        return Kind.MACHO if 0 < count <= _MAX_FAT_ARCHS else Kind.OTHER
    if magic_be in (MH_MAGIC, MH_MAGIC_64) or int.from_bytes(head[:4], "little") in (
        MH_MAGIC,
        MH_MAGIC_64,
    ):
        return Kind.MACHO
    if head[:4] == b"PK\x03\x04":
        return Kind.ZIP
    if head[:4] == b"xar!":
        return Kind.XAR
    return Kind.OTHER


@dataclass(frozen=True)
class Slice:
    offset: int  # of the slice in the file
    size: int
    architecture: str
    filetype: int
    code_signature: tuple[int, int] | None  # (offset in slice, size) from LC_CODE_SIGNATURE
    sdk: int | None  # packed xxxx.yy.zz; None when there is no version command
    platform: int | None  # LC_BUILD_VERSION platform; PLATFORM_MACOS for LC_VERSION_MIN_MACOSX


def slice_ranges(source: ByteSource) -> list[tuple[int, int]]:
    """(offset, size) of each slice: one for a thin file, one per fat_arch, in file order."""
    return sorted(slices_in_header_order(source))


def slices_in_header_order(source: ByteSource) -> list[tuple[int, int]]:
    """(offset, size) of each slice in the order of the fat header's ``fat_arch`` entries.

    The first entry names the slice whose signature identifies the file for a ticket (Apple's
    and rcodesign's staplers take it), which need not be the slice at the lowest offset.
    """
    head = source.read_at(0, 8)
    magic = int.from_bytes(head[:4], "big")
    if magic not in (FAT_MAGIC, FAT_MAGIC_64):
        return [(0, source.size)]
    count = int.from_bytes(head[4:8], "big")
    entry = 32 if magic == FAT_MAGIC_64 else 20
    table = source.read_at(8, count * entry)
    if len(table) < count * entry:
        raise MachOFormatError("fat header truncated")
    ranges = []
    for i in range(count):
        if magic == FAT_MAGIC_64:
            _cpu, _sub, offset, size, _align, _res = struct.unpack_from(">iiQQII", table, i * entry)
        else:
            _cpu, _sub, offset, size, _align = struct.unpack_from(">iiIII", table, i * entry)
        if offset + size > source.size or offset < 8 + count * entry:
            raise MachOFormatError(f"fat slice {i} lies outside the file")
        ranges.append((offset, size))
    return ranges


def read_slice(source: ByteSource, offset: int, size: int) -> Slice:
    header = source.read_at(offset, 32)
    if len(header) < 28:
        raise MachOFormatError("Mach-O header truncated")
    if int.from_bytes(header[:4], "little") in (MH_MAGIC, MH_MAGIC_64):
        order = "<"
    elif int.from_bytes(header[:4], "big") in (MH_MAGIC, MH_MAGIC_64):
        order = ">"
    else:
        raise MachOFormatError(f"slice at {offset} has no Mach-O magic")
    magic, cputype, _sub, filetype, ncmds, sizeofcmds, _flags = struct.unpack_from(
        order + "IiiIIII", header
    )
    header_size = 32 if magic == MH_MAGIC_64 else 28
    if sizeofcmds > min(_MAX_LOAD_COMMANDS_BYTES, size):
        raise MachOFormatError("load commands larger than the slice")
    commands = source.read_at(offset + header_size, sizeofcmds)
    if len(commands) < sizeofcmds:
        raise MachOFormatError("load commands truncated")
    signature = sdk = platform = None
    build_version_seen = False
    pos = 0
    for _ in range(ncmds):
        if pos + 8 > len(commands):
            raise MachOFormatError("load command runs past sizeofcmds")
        cmd, cmdsize = struct.unpack_from(order + "II", commands, pos)
        if cmdsize < 8 or pos + cmdsize > len(commands):
            raise MachOFormatError(f"load command {cmd:#x} has a bad size")
        if cmd == LC_CODE_SIGNATURE and cmdsize >= 16:
            signature = struct.unpack_from(order + "II", commands, pos + 8)
        elif cmd == LC_BUILD_VERSION and cmdsize >= 24:
            platform, _minos, sdk = struct.unpack_from(order + "III", commands, pos + 8)
            build_version_seen = True
        elif cmd == LC_VERSION_MIN_MACOSX and cmdsize >= 16 and not build_version_seen:
            _version, sdk = struct.unpack_from(order + "II", commands, pos + 8)
            platform = PLATFORM_MACOS
        pos += cmdsize
    if signature is not None and signature[0] + signature[1] > size:
        raise MachOFormatError("LC_CODE_SIGNATURE points past the end of the slice")
    arch = _CPU_NAMES.get(cputype, f"cputype {cputype}")
    if arch == "arm64" and (_sub & 0xFF) == 2:
        arch = "arm64e"
    elif arch == "x86_64" and (_sub & 0xFF) == 8:
        arch = "x86_64h"
    return Slice(offset, size, arch, filetype, signature, sdk, platform)


def format_version(packed: int) -> str:
    return f"{packed >> 16}.{(packed >> 8) & 0xFF}.{packed & 0xFF}"
