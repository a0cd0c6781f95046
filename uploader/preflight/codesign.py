"""The embedded code signature (``LC_CODE_SIGNATURE`` data): SuperBlob, CodeDirectories, blobs.

The SuperBlob and its blobs are read by ``uploader.formats.superblob`` (magics and slots are
defined there); this module reads *who* signed and *how*: CodeDirectory flags, team, CMS,
entitlements.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from uploader.formats.superblob import (
    BLOB_WRAPPER,
    CODE_DIRECTORY,
    ENTITLEMENTS_DER,
    ENTITLEMENTS_XML,
    SLOT_ENTITLEMENTS,
    SLOT_ENTITLEMENTS_DER,
    SLOT_SIGNATURE,
    SignatureFormatError,
    is_code_directory_slot,
    magic_of,
    read_blobs,
)

CS_ADHOC = 0x2
CS_RUNTIME = 0x10000
CS_LINKER_SIGNED = 0x20000

HASH_SHA1 = 1

_SUPPORTS_TEAM_ID = 0x20200


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
    directories: list[CodeDirectory] = []
    cms = xml = der = None
    for slot, blob in read_blobs(data):
        blob_magic, payload = magic_of(blob), blob[8:]
        if is_code_directory_slot(slot):
            if blob_magic != CODE_DIRECTORY:
                raise SignatureFormatError(f"slot {slot:#x} is not a CodeDirectory")
            directories.append(_code_directory(blob))
        elif slot == SLOT_SIGNATURE and blob_magic == BLOB_WRAPPER:
            cms = payload or None
        elif slot == SLOT_ENTITLEMENTS and blob_magic == ENTITLEMENTS_XML:
            xml = payload
        elif slot == SLOT_ENTITLEMENTS_DER and blob_magic == ENTITLEMENTS_DER:
            der = payload
    if not directories:
        raise SignatureFormatError("code signature has no CodeDirectory")
    return EmbeddedSignature(tuple(directories), cms, xml, der)


def _code_directory(blob: bytes) -> CodeDirectory:
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
