"""UDIF disk images: the 512-byte big-endian ``koly`` trailer at the end of a .dmg.

(indygreg/apple-platform-rs ``apple-dmg/src/koly.rs``, rcodesign ``dmg.rs`` ``KolyTrailer``:)
the XML plist's offset and length at 216/224, the embedded code signature's offset and size at
296/304 (after ``reserved1[64]``). The signature is a SuperBlob (``formats.superblob``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

KOLY_SIZE = 512
KOLY_MAGIC = b"koly"
PLIST_FIELD = 0xD8  # 216: plist offset, then length (u64 each)
SIGNATURE_FIELD = 0x128  # 296: code signature offset, then size (u64 each)
_RANGE = struct.Struct(">QQ")


@dataclass(frozen=True)
class Koly:
    plist_offset: int
    plist_length: int
    signature_offset: int
    signature_length: int

    @property
    def signed(self) -> bool:
        return self.signature_length > 0


def is_koly(trailer: bytes) -> bool:
    return len(trailer) >= len(KOLY_MAGIC) and trailer[:4] == KOLY_MAGIC


def read_koly(trailer: bytes) -> Koly:
    """The fields of a trailer (the last ``KOLY_SIZE`` bytes; ``is_koly`` checked by the caller)."""
    plist_offset, plist_length = _RANGE.unpack_from(trailer, PLIST_FIELD)
    signature_offset, signature_length = _RANGE.unpack_from(trailer, SIGNATURE_FIELD)
    return Koly(plist_offset, plist_length, signature_offset, signature_length)


def with_signature(trailer: bytes, offset: int, length: int) -> bytes:
    """``trailer`` with its code signature range set to (``offset``, ``length``)."""
    updated = bytearray(trailer)
    _RANGE.pack_into(updated, SIGNATURE_FIELD, offset, length)
    return bytes(updated)
