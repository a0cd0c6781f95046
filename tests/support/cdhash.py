"""The ticket record name of an artifact, decoded by hand from its bytes, for expected values.

Written apart from ``uploader/staple/identity.py`` (the code under test) and from the emulator's
``service/emulator/codesign.py``, so one wrong derivation cannot hide in all of them. The rules
(reference/stapling.md, Apple's ``cs_blobs.h``, ``mach-o/fat.h``, rcodesign's ``dmg.rs``):

* a universal binary is identified by the slice its FIRST ``fat_arch`` entry names;
* a Mach-O's ``LC_CODE_SIGNATURE`` (0x1D) gives the embedded-signature SuperBlob (0xfade0cc0);
* a SuperBlob's index holds CodeDirectories (0xfade0c02) in slot 0 and the alternate slots
  0x1000...; the one with hash type 2 (SHA-256) is the one looked up when there is one;
* the cdhash is that hash of the whole CodeDirectory blob, cut to 20 bytes;
* a UDIF image (.dmg) ends with a 512-byte ``koly`` trailer whose code-signature offset and
  length follow the XML plist's offset/length and 64 reserved bytes.

Everything here reads whole files into memory: fixtures are small.
"""

from __future__ import annotations

import hashlib
import plistlib
from pathlib import Path

_SLOT_ALTERNATES = range(0x1000, 0x1005)


def _be32(data: bytes | memoryview, at: int) -> int:
    return int.from_bytes(data[at : at + 4], "big")


def _le_or_be(data: bytes, at: int, little: bool) -> int:
    return int.from_bytes(data[at : at + 4], "little" if little else "big")


def first_slice(binary: bytes) -> bytes:
    """The slice named by the first fat_arch entry, or the whole thin file."""
    magic = _be32(binary, 0)
    if magic == 0xCAFEBABE:  # fat_arch: cputype, cpusubtype, offset, size, align (5 x u32)
        offset, size = _be32(binary, 8 + 8), _be32(binary, 8 + 12)
    elif magic == 0xCAFEBABF:  # fat_arch_64: cputype, cpusubtype, offset u64, size u64, ...
        offset = int.from_bytes(binary[16:24], "big")
        size = int.from_bytes(binary[24:32], "big")
    else:
        return binary
    return binary[offset : offset + size]


def embedded_signature(thin: bytes) -> bytes:
    """The SuperBlob a thin Mach-O's LC_CODE_SIGNATURE points at."""
    little = thin[:4] in (b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe")
    is_64 = thin[:4] in (b"\xcf\xfa\xed\xfe", b"\xfe\xed\xfa\xcf")
    command_count = _le_or_be(thin, 16, little)
    cursor = 32 if is_64 else 28
    for _ in range(command_count):
        command, command_size = _le_or_be(thin, cursor, little), _le_or_be(thin, cursor + 4, little)
        if command == 0x1D:
            data_offset = _le_or_be(thin, cursor + 8, little)
            data_size = _le_or_be(thin, cursor + 12, little)
            return thin[data_offset : data_offset + data_size]
        cursor += command_size
    raise AssertionError("fixture has no LC_CODE_SIGNATURE")


def code_directories(superblob: bytes) -> dict[int, bytes]:
    """hash type -> CodeDirectory blob, for every CodeDirectory in the SuperBlob's index."""
    assert _be32(superblob, 0) == 0xFADE0CC0, "not an embedded-signature SuperBlob"
    found: dict[int, bytes] = {}
    for entry in range(_be32(superblob, 8)):
        slot, blob_at = _be32(superblob, 12 + 8 * entry), _be32(superblob, 16 + 8 * entry)
        if slot != 0 and slot not in _SLOT_ALTERNATES:
            continue
        if _be32(superblob, blob_at) != 0xFADE0C02:
            continue
        blob = superblob[blob_at : blob_at + _be32(superblob, blob_at + 4)]
        # CodeDirectory: magic, length, version, flags, hashOffset, identOffset, nSpecialSlots,
        # nCodeSlots, codeLimit (9 x u32 = 36 bytes), then hashSize (u8), hashType (u8).
        found[blob[37]] = blob
    return found


def record_name_of_signature(superblob: bytes) -> str:
    directories = code_directories(superblob)
    hash_type = 2 if 2 in directories else 1
    digest = hashlib.new({1: "sha1", 2: "sha256"}[hash_type], directories[hash_type]).digest()
    return f"2/{hash_type}/{digest[:20].hex()}"


def record_name_of_binary(binary: bytes) -> str:
    return record_name_of_signature(embedded_signature(first_slice(binary)))


def record_name_of_app(bundle: Path) -> str:
    info = plistlib.loads((bundle / "Contents" / "Info.plist").read_bytes())
    executable = bundle / "Contents" / "MacOS" / info["CFBundleExecutable"]
    return record_name_of_binary(executable.read_bytes())


def record_name_of_dmg(image: bytes) -> str:
    trailer = image[-512:]
    assert trailer[:4] == b"koly"
    # koly: signature, version, headerSize, flags (4 x u32); runningDataForkOffset,
    # dataForkOffset, dataForkLength, rsrcForkOffset, rsrcForkLength (5 x u64); segmentNumber,
    # segmentCount (2 x u32); segmentID (16); dataChecksumType, dataChecksumSize (2 x u32);
    # dataChecksum (128); xmlOffset, xmlLength (2 x u64); reserved (64); then the signature's.
    at = 4 * 4 + 5 * 8 + 2 * 4 + 16 + 2 * 4 + 128 + 2 * 8 + 64
    offset = int.from_bytes(trailer[at : at + 8], "big")
    length = int.from_bytes(trailer[at + 8 : at + 16], "big")
    return record_name_of_signature(image[offset : offset + length])


def raw_cdhash(record_name: str) -> bytes:
    return bytes.fromhex(record_name.rsplit("/", 1)[1])
