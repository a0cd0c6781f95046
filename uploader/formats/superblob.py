"""The embedded code signature: a SuperBlob of (slot, blob) pairs, every blob ``magic, length``.

Layout from Apple's ``cs_blobs.h`` (apple-oss-distributions/xnu ``osfmk/kern/cs_blobs.h``): a
SuperBlob ``magic 0xfade0cc0, length, count`` then ``count`` (slot type, offset) pairs; every
blob starts ``magic, length``. All of it is big-endian, whatever the slice's byte order. The
same SuperBlob signs a Mach-O slice (``LC_CODE_SIGNATURE``) and a disk image (koly trailer),
where stapling adds the ticket as a blob wrapper in slot ``SLOT_TICKET``.
"""

from __future__ import annotations

import struct

EMBEDDED_SIGNATURE = 0xFADE0CC0  # the SuperBlob
CODE_DIRECTORY = 0xFADE0C02
ENTITLEMENTS_XML = 0xFADE7171
ENTITLEMENTS_DER = 0xFADE7172
BLOB_WRAPPER = 0xFADE0B01  # holds the CMS signature, or a stapled ticket

SLOT_CODE_DIRECTORY = 0
SLOT_INFO_PLIST = 1
SLOT_REQUIREMENTS = 2
SLOT_RESOURCES = 3
SLOT_ENTITLEMENTS = 5
SLOT_ENTITLEMENTS_DER = 7
SLOT_ALTERNATE_CODE_DIRECTORIES = range(0x1000, 0x1005)
SLOT_SIGNATURE = 0x10000  # the CMS, in a blob wrapper
SLOT_TICKET = 0x10002  # a disk image's stapled ticket, in a blob wrapper

MAX_BLOBS = 64
_HEADER = struct.Struct(">III")
_INDEX = struct.Struct(">II")


class SignatureFormatError(ValueError):
    """The signature bytes do not parse; the notary service calls this an invalid signature."""


def is_code_directory_slot(slot: int) -> bool:
    return slot == SLOT_CODE_DIRECTORY or slot in SLOT_ALTERNATE_CODE_DIRECTORIES


def read_blobs(data: bytes) -> list[tuple[int, bytes]]:
    """Every (slot, whole blob: magic and length included) of a SuperBlob, in index order.

    Raises ``SignatureFormatError`` for anything that runs past the SuperBlob.
    """
    if len(data) < _HEADER.size:
        raise SignatureFormatError("code signature shorter than a SuperBlob header")
    magic, length, count = _HEADER.unpack_from(data, 0)
    if magic != EMBEDDED_SIGNATURE:
        raise SignatureFormatError(
            f"code signature magic is {magic:#x}, not {EMBEDDED_SIGNATURE:#x}"
        )
    if length > len(data) or count > MAX_BLOBS or _HEADER.size + _INDEX.size * count > length:
        raise SignatureFormatError("SuperBlob length or count runs past the signature data")
    found: list[tuple[int, bytes]] = []
    for index in range(count):
        slot, offset = _INDEX.unpack_from(data, _HEADER.size + _INDEX.size * index)
        if offset + 8 > length:
            raise SignatureFormatError(f"blob for slot {slot:#x} starts past the SuperBlob")
        (blob_length,) = struct.unpack_from(">I", data, offset + 4)
        if blob_length < 8 or offset + blob_length > length:
            raise SignatureFormatError(f"blob for slot {slot:#x} runs past the SuperBlob")
        found.append((slot, data[offset : offset + blob_length]))
    return found


def magic_of(blob: bytes) -> int:
    return int.from_bytes(blob[:4], "big")


def wrapped(blob: bytes | None) -> bytes | None:
    """The payload of a blob wrapper (a CMS, a ticket); None for another blob or none."""
    if blob is None or magic_of(blob) != BLOB_WRAPPER:
        return None
    return blob[8:]


def wrapper(payload: bytes) -> bytes:
    return struct.pack(">II", BLOB_WRAPPER, 8 + len(payload)) + payload


def build(blobs: dict[int, bytes]) -> bytes:
    """A SuperBlob of ``blobs`` (slot: whole blob), slots in ascending order."""
    header = _HEADER.size + _INDEX.size * len(blobs)
    index, body = bytearray(), bytearray()
    for slot in sorted(blobs):
        index += _INDEX.pack(slot, header + len(body))
        body += blobs[slot]
    return _HEADER.pack(EMBEDDED_SIGNATURE, header + len(body), len(blobs)) + index + body
