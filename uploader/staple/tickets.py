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

from uploader.formats import superblob, udif
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
from uploader.staple.identity import StapleInputError, read_exact, read_koly

TICKET_MAGIC = b"s8ch"
MAX_TICKET_BYTES = 1 << 20
PKG_TRAILER = struct.Struct("<4sHHII")
_TRAILER_TERMINATOR, _TRAILER_TICKET = 1, 2


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
    try:
        return dict(superblob.read_blobs(signature))
    except superblob.SignatureFormatError:
        raise StapleInputError(f"{path}: the disk image's signature is malformed; sign it again") from None


def _dmg_signature(f: IO[bytes], path: Path) -> tuple[int, int, bytes]:
    """(file size, signature offset, the signature) of a disk image signed up to its trailer."""
    size, koly = read_koly(f, path)
    if not koly.signed:
        raise StapleInputError(f"{path}: the disk image is not signed; sign it and notarise it")
    if koly.signature_offset + koly.signature_length != size - udif.KOLY_SIZE:
        raise StapleInputError(f"{path}: the signature does not end at the koly trailer; "
                               "this image layout is not supported for stapling")
    return size, koly.signature_offset, read_exact(f, koly.signature_offset, koly.signature_length)


def read_dmg_ticket(path: Path) -> bytes | None:
    with opened_artifact(path) as f:
        *_, signature = _dmg_signature(f, path)
    blob = _superblob_slots(signature, path).get(superblob.SLOT_TICKET)
    return blob[8:] if blob is not None else None  # the blob wrapper's payload


def write_dmg_ticket(path: Path, ticket: bytes, stop: threading.Event | None = None) -> None:
    with opened_artifact(path) as f:
        size, offset, signature = _dmg_signature(f, path)
        slots = _superblob_slots(signature, path)
        slots[superblob.SLOT_TICKET] = superblob.wrapper(ticket)
        rebuilt = superblob.build(slots)
        trailer = read_exact(f, size - udif.KOLY_SIZE, udif.KOLY_SIZE)
        koly = udif.with_signature(trailer, offset, len(rebuilt))

        def write(out: IO[bytes]) -> None:
            copy_range(f, out, offset, path, stop)
            out.write(rebuilt)
            out.write(koly)

        replace_artifact(f, path, write)
