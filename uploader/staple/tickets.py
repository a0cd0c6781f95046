"""Where a ticket lives in each artifact: write it atomically, read it back for ``--check``.

* ``.app``: the raw ticket is the file ``Contents/CodeResources`` (written to a temporary name in
  the same folder, then renamed over).
* flat ``.pkg``: appended after a terminator trailer and followed by a ticket trailer (16 bytes
  each, little-endian ``"t8lr"``, version 1, type, length, 0). A stapled package is re-stapled by
  replacing what follows the original content.
* ``.dmg``: the signature SuperBlob gets the ticket as a blob wrapper in slot ``0x10002``; the
  koly trailer's code-signature size is updated. The signature must end where the trailer begins.

Packages and images are rewritten into a temporary file beside them and renamed over the
original, so a crash never leaves a half-written artifact; every file is opened and replaced
through ``uploader.staple.files`` (no link inside a bundle, no blocking open, owner, mode and
extended attributes kept, stale temporary files of killed runs removed). Blocking; run on a
worker thread; ``stop`` ends a long copy between reads.
"""

from __future__ import annotations

import os
import struct
import threading
from pathlib import Path
from typing import IO

from uploader.source_file import SourceRejected, open_regular
from uploader.staple.files import (
    bundle_folder,
    copy_range,
    exists_in,
    opened_artifact,
    opened_in_bundle,
    replace,
    replace_artifact,
)
from uploader.staple.identity import (
    KOLY_SIGNATURE_FIELD,
    KOLY_SIZE,
    StapleInputError,
    read_exact,
    read_koly,
)

TICKET_MAGIC = b"s8ch"
MAX_TICKET_BYTES = 1 << 20
PKG_TRAILER = struct.Struct("<4sHHII")
_TRAILER_TERMINATOR, _TRAILER_TICKET = 1, 2
_SUPERBLOB = 0xFADE0CC0
_BLOB_WRAPPER = 0xFADE0B01
SLOT_TICKET = 0x10002


def app_ticket_path(bundle: Path) -> Path:
    return bundle / "Contents" / "CodeResources"


def write_app_ticket(bundle: Path, ticket: bytes, stop: threading.Event | None = None) -> None:
    target = app_ticket_path(bundle)

    def write(out: IO[bytes]) -> None:
        out.write(ticket)

    with bundle_folder(bundle, "Contents") as contents:  # the ticket lands inside this bundle
        if not exists_in(contents, target.name):
            replace(contents, target.name, target, write, owner_of_new=os.fstat(contents))
            return
        try:
            fd, _ = open_regular(target.name, dir_fd=contents)
        except SourceRejected as error:
            raise StapleInputError(f"{target}: exists and is not a regular file ({error.why}); "
                                   "remove it first") from None
        with os.fdopen(fd, "rb") as original:
            replace(contents, target.name, target, write, original=original)


def read_app_ticket(bundle: Path) -> bytes | None:
    """The stapled ticket, None when there is no regular file ``Contents/CodeResources``."""
    try:
        with opened_in_bundle(bundle, "Contents", "CodeResources") as f:
            if os.fstat(f.fileno()).st_size > MAX_TICKET_BYTES:
                return b""  # implausible: reported as not a ticket
            return f.read(MAX_TICKET_BYTES)
    except StapleInputError:
        return None


def _pkg_split(f: IO[bytes], size: int) -> tuple[int, bytes | None]:
    """(length of the package without any stapled ticket, the stapled ticket or None)."""
    if size < 2 * PKG_TRAILER.size:
        return size, None
    magic, version, kind, length, _ = PKG_TRAILER.unpack(read_exact(f, size - PKG_TRAILER.size,
                                                               PKG_TRAILER.size))
    if magic != b"t8lr" or version != 1 or kind != _TRAILER_TICKET:
        return size, None
    start = size - PKG_TRAILER.size - length
    if length > MAX_TICKET_BYTES or start - PKG_TRAILER.size < 0:
        return size, None
    head = PKG_TRAILER.unpack(read_exact(f, start - PKG_TRAILER.size, PKG_TRAILER.size))
    if head[0] != b"t8lr" or head[2] != _TRAILER_TERMINATOR:
        return size, None
    return start - PKG_TRAILER.size, read_exact(f, start, length)


def read_pkg_ticket(path: Path) -> bytes | None:
    with opened_artifact(path) as f:
        return _pkg_split(f, os.fstat(f.fileno()).st_size)[1]


def write_pkg_ticket(path: Path, ticket: bytes, stop: threading.Event | None = None) -> None:
    with opened_artifact(path) as f:
        original, _ = _pkg_split(f, os.fstat(f.fileno()).st_size)

        def write(out: IO[bytes]) -> None:
            copy_range(f, out, original, path, stop)
            out.write(PKG_TRAILER.pack(b"t8lr", 1, _TRAILER_TERMINATOR, 0, 0))
            out.write(ticket)
            out.write(PKG_TRAILER.pack(b"t8lr", 1, _TRAILER_TICKET, len(ticket), 0))

        replace_artifact(f, path, write)


def _superblob_slots(signature: bytes, path: Path) -> dict[int, bytes]:
    magic, length, count = struct.unpack_from(">III", signature)
    if magic != _SUPERBLOB or length > len(signature) or 12 + 8 * count > length:
        raise StapleInputError(f"{path}: the disk image's signature is malformed; sign it again")
    slots: dict[int, bytes] = {}
    for index in range(count):
        slot, offset = struct.unpack_from(">II", signature, 12 + 8 * index)
        if offset + 8 > length:
            raise StapleInputError(f"{path}: the disk image's signature is malformed")
        (blob_length,) = struct.unpack_from(">I", signature, offset + 4)
        if blob_length < 8 or offset + blob_length > length:
            raise StapleInputError(f"{path}: the disk image's signature is malformed")
        slots[slot] = signature[offset : offset + blob_length]
    return slots


def _superblob(slots: dict[int, bytes]) -> bytes:
    header = 12 + 8 * len(slots)
    index, blobs = bytearray(), bytearray()
    for slot in sorted(slots):
        index += struct.pack(">II", slot, header + len(blobs))
        blobs += slots[slot]
    return struct.pack(">III", _SUPERBLOB, header + len(blobs), len(slots)) + index + blobs


def _dmg_signature(f: IO[bytes], path: Path) -> tuple[int, int, int, bytes]:
    size, offset, length = read_koly(f, path)
    if length == 0:
        raise StapleInputError(f"{path}: the disk image is not signed; sign it and notarise it")
    if offset + length != size - KOLY_SIZE:
        raise StapleInputError(f"{path}: the signature does not end at the koly trailer; "
                               "this image layout is not supported for stapling")
    return size, offset, length, read_exact(f, offset, length)


def read_dmg_ticket(path: Path) -> bytes | None:
    with opened_artifact(path) as f:
        *_, signature = _dmg_signature(f, path)
    wrapper = _superblob_slots(signature, path).get(SLOT_TICKET)
    return wrapper[8:] if wrapper is not None else None


def write_dmg_ticket(path: Path, ticket: bytes, stop: threading.Event | None = None) -> None:
    with opened_artifact(path) as f:
        size, offset, _length, signature = _dmg_signature(f, path)
        slots = _superblob_slots(signature, path)
        slots[SLOT_TICKET] = struct.pack(">II", _BLOB_WRAPPER, 8 + len(ticket)) + ticket
        rebuilt = _superblob(slots)
        koly = bytearray(read_exact(f, size - KOLY_SIZE, KOLY_SIZE))
        struct.pack_into(">QQ", koly, KOLY_SIGNATURE_FIELD, offset, len(rebuilt))

        def write(out: IO[bytes]) -> None:
            copy_range(f, out, offset, path, stop)
            out.write(rebuilt)
            out.write(koly)

        replace_artifact(f, path, write)
