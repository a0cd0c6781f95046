"""The embedded code signature (``LC_CODE_SIGNATURE`` data): SuperBlob, CodeDirectories, blobs.

Layout from Apple's ``cs_blobs.h`` (apple-oss-distributions/xnu ``osfmk/kern/cs_blobs.h``): a
SuperBlob ``magic 0xfade0cc0, length, count`` then ``count`` (slot type, offset) pairs; every
blob starts ``magic, length``. All of it is big-endian, whatever the slice's byte order.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

EMBEDDED_SIGNATURE = 0xFADE0CC0
CODE_DIRECTORY = 0xFADE0C02
ENTITLEMENTS_XML = 0xFADE7171
ENTITLEMENTS_DER = 0xFADE7172
BLOB_WRAPPER = 0xFADE0B01  # holds the CMS signature

SLOT_CODE_DIRECTORY = 0
SLOT_ENTITLEMENTS = 5
SLOT_ENTITLEMENTS_DER = 7
SLOT_ALTERNATE_CODE_DIRECTORIES = range(0x1000, 0x1005)
SLOT_SIGNATURE = 0x10000

CS_ADHOC = 0x2
CS_RUNTIME = 0x10000
CS_LINKER_SIGNED = 0x20000

HASH_SHA1 = 1

_SUPPORTS_TEAM_ID = 0x20200


class SignatureFormatError(ValueError):
    """The signature bytes do not parse; the notary service calls this an invalid signature."""


@dataclass(frozen=True)
class CodeDirectory:
    version: int
    flags: int
    hash_type: int
    identifier: str
    team_id: str | None

    @property
    def is_adhoc(self) -> bool:
        return bool(self.flags & CS_ADHOC)

    @property
    def is_linker_signed(self) -> bool:
        return bool(self.flags & CS_LINKER_SIGNED)

    @property
    def has_runtime(self) -> bool:
        return bool(self.flags & CS_RUNTIME)


@dataclass(frozen=True)
class EmbeddedSignature:
    code_directories: tuple[CodeDirectory, ...]
    cms: bytes | None  # None when absent or an empty wrapper (ad-hoc)
    entitlements_xml: bytes | None
    entitlements_der: bytes | None


def parse_embedded_signature(data: bytes) -> EmbeddedSignature:
    if len(data) < 12:
        raise SignatureFormatError("code signature shorter than a SuperBlob header")
    magic, length, count = struct.unpack_from(">III", data, 0)
    if magic != EMBEDDED_SIGNATURE:
        raise SignatureFormatError(
            f"code signature magic is {magic:#x}, not {EMBEDDED_SIGNATURE:#x}"
        )
    if length > len(data) or 12 + 8 * count > length:
        raise SignatureFormatError("SuperBlob length or count runs past the signature data")
    directories: list[CodeDirectory] = []
    cms = xml = der = None
    for index in range(count):
        slot, offset = struct.unpack_from(">II", data, 12 + 8 * index)
        blob_magic, payload = _blob(data, offset, length)
        if slot == SLOT_CODE_DIRECTORY or slot in SLOT_ALTERNATE_CODE_DIRECTORIES:
            if blob_magic != CODE_DIRECTORY:
                raise SignatureFormatError(f"slot {slot:#x} is not a CodeDirectory")
            directories.append(_code_directory(data, offset, payload))
        elif slot == SLOT_SIGNATURE and blob_magic == BLOB_WRAPPER:
            cms = payload or None
        elif slot == SLOT_ENTITLEMENTS and blob_magic == ENTITLEMENTS_XML:
            xml = payload
        elif slot == SLOT_ENTITLEMENTS_DER and blob_magic == ENTITLEMENTS_DER:
            der = payload
    if not directories:
        raise SignatureFormatError("code signature has no CodeDirectory")
    return EmbeddedSignature(tuple(directories), cms, xml, der)


def _blob(data: bytes, offset: int, limit: int) -> tuple[int, bytes]:
    if offset + 8 > limit:
        raise SignatureFormatError(f"blob at {offset} starts past the SuperBlob")
    magic, length = struct.unpack_from(">II", data, offset)
    if length < 8 or offset + length > limit:
        raise SignatureFormatError(f"blob at {offset} runs past the SuperBlob")
    return magic, data[offset + 8 : offset + length]


def _code_directory(data: bytes, offset: int, payload: bytes) -> CodeDirectory:
    blob = data[offset : offset + 8 + len(payload)]
    if len(blob) < 44:
        raise SignatureFormatError("CodeDirectory too short")
    version, flags, _hash_offset, ident_offset = struct.unpack_from(">IIII", blob, 8)
    hash_type = blob[37]
    identifier = _c_string(blob, ident_offset)
    team_id = None
    if version >= _SUPPORTS_TEAM_ID and len(blob) >= 52:
        (team_offset,) = struct.unpack_from(">I", blob, 48)
        team_id = _c_string(blob, team_offset) if team_offset else None
    return CodeDirectory(version, flags, hash_type, identifier, team_id)


def _c_string(blob: bytes, offset: int) -> str:
    if not 0 < offset < len(blob):
        return ""
    end = blob.find(b"\x00", offset)
    return blob[offset : end if end >= 0 else len(blob)].decode("utf-8", "replace")
