"""The CodeDirectory in full: the hashes it records and the bytes each one covers.

``codesign.py`` reads the signature for *who* signed and *how* (flags, team, CMS); this module
reads it for *what* was signed, so ``pages.py`` can compare it with the bytes. Layout from
Apple's ``cs_blobs.h`` (apple-oss-distributions/xnu ``osfmk/kern/cs_blobs.h``) and rcodesign
``code_directory.rs``: code slot *i* is at ``hashOffset + i * hashSize``, special slot *n* at
``hashOffset - n * hashSize``; the cdhash is the digest of the whole CodeDirectory blob with its
own hash type, cut to 20 bytes. Every count and offset is checked against the blob's length.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Any

from uploader.formats.superblob import (
    CODE_DIRECTORY,
    SLOT_ENTITLEMENTS,
    SLOT_ENTITLEMENTS_DER,
    SLOT_REQUIREMENTS,
    SLOT_SIGNATURE,
    SignatureFormatError,
    is_code_directory_slot,
    magic_of,
    read_blobs,
    wrapped,
)

# Special slots whose bytes live inside the signature itself (the others are bundle files).
EMBEDDED_SPECIAL_SLOTS = {
    SLOT_REQUIREMENTS: "requirements",
    SLOT_ENTITLEMENTS: "entitlements",
    SLOT_ENTITLEMENTS_DER: "DER entitlements",
}

_HASHES = {1: ("sha1", 20), 2: ("sha256", 32), 3: ("sha256", 20), 4: ("sha384", 48)}
HASH_NAMES = {1: "SHA-1", 2: "SHA-256", 3: "SHA-256/20", 4: "SHA-384"}
CDHASH_BYTES = 20
_MAX_CODE_SLOTS = 1 << 24  # 64 GiB of 4 KiB pages
_MAX_SPECIAL_SLOTS = 64
_SUPPORTS_CODE_LIMIT_64 = 0x20300


@dataclass(frozen=True)
class CodeDirectory:
    slot: int
    raw: bytes  # the whole blob: what the cdhash and the CMS signature cover
    hash_type: int
    hash_size: int
    page_shift: int  # log2 of the page size; 0 means one page up to the code limit
    code_limit: int
    n_code_slots: int
    n_special_slots: int
    hash_offset: int

    @property
    def hash_name(self) -> str:
        return HASH_NAMES.get(self.hash_type, f"hash type {self.hash_type}")

    @property
    def page_size(self) -> int:
        return (1 << self.page_shift) if self.page_shift else max(self.code_limit, 1)

    def digest(self, data: bytes | memoryview) -> bytes:
        digest: bytes = new_hasher(self.hash_type, data).digest()
        return digest[: self.hash_size]

    def hasher(self) -> Any:
        return new_hasher(self.hash_type)

    @property
    def cdhash(self) -> bytes:
        digest: bytes = new_hasher(self.hash_type, self.raw).digest()
        return digest[:CDHASH_BYTES]

    def code_slot(self, index: int) -> bytes:
        start = self.hash_offset + index * self.hash_size
        return self.raw[start : start + self.hash_size]

    def special_slot(self, number: int) -> bytes | None:
        """The recorded hash, or None when the directory has no such slot or it is all zeros."""
        if not 0 < number <= self.n_special_slots:
            return None
        start = self.hash_offset - number * self.hash_size
        value = self.raw[start : start + self.hash_size]
        return value if any(value) else None


def new_hasher(hash_type: int, data: bytes | memoryview = b"") -> Any:
    name, _size = _HASHES.get(hash_type, ("", 0))
    if not name:
        raise SignatureFormatError(f"unknown CodeDirectory hash type {hash_type}")
    return hashlib.new(name, data)


@dataclass(frozen=True)
class SignatureBlobs:
    directories: tuple[CodeDirectory, ...]  # slot 0 first, then the alternates
    blobs: dict[int, bytes]  # other slots: the whole blob (magic and length included)

    @property
    def cms(self) -> bytes | None:
        return wrapped(self.blobs.get(SLOT_SIGNATURE)) or None


def read_signature_blobs(data: bytes) -> SignatureBlobs:
    """Every blob of an embedded signature SuperBlob; raises ``SignatureFormatError``."""
    directories: list[CodeDirectory] = []
    blobs: dict[int, bytes] = {}
    for slot, raw in read_blobs(data):
        if is_code_directory_slot(slot):
            if magic_of(raw) != CODE_DIRECTORY:
                raise SignatureFormatError(f"slot {slot:#x} is not a CodeDirectory")
            directories.append(_code_directory(slot, raw))
        else:
            blobs[slot] = raw
    if not directories:
        raise SignatureFormatError("code signature has no CodeDirectory")
    directories.sort(key=lambda cd: cd.slot)
    return SignatureBlobs(tuple(directories), blobs)


def _code_directory(slot: int, raw: bytes) -> CodeDirectory:
    if len(raw) < 44:
        raise SignatureFormatError("CodeDirectory too short")
    version, _flags, hash_offset, _ident = struct.unpack_from(">IIII", raw, 8)
    n_special, n_code, code_limit = struct.unpack_from(">III", raw, 24)
    hash_size, hash_type, _platform, page_shift = struct.unpack_from(">BBBB", raw, 36)
    if version >= _SUPPORTS_CODE_LIMIT_64 and len(raw) >= 64:
        (code_limit_64,) = struct.unpack_from(">Q", raw, 56)
        code_limit = code_limit_64 or code_limit
    expected_size = _HASHES.get(hash_type, ("", 0))[1]
    if hash_size != expected_size:
        raise SignatureFormatError(
            f"CodeDirectory hash size {hash_size} does not fit hash type {hash_type}"
        )
    if n_code > _MAX_CODE_SLOTS or n_special > _MAX_SPECIAL_SLOTS or page_shift > 30:
        raise SignatureFormatError("CodeDirectory slot counts or page size are implausible")
    if hash_offset - n_special * hash_size < 44 or hash_offset + n_code * hash_size > len(raw):
        raise SignatureFormatError("CodeDirectory hash slots run outside the blob")
    return CodeDirectory(
        slot, raw, hash_type, hash_size, page_shift, code_limit, n_code, n_special, hash_offset
    )
