"""Which code signature identifies an artifact, as the ticket lookup's record name.

From stapling.md (which artifact kind uses which: the ``ticket_key`` column of
``uploader.artifact.KINDS``): a ``.app`` is identified by its main executable's (first slice's) CodeDirectory
hash, preferring the SHA-256 CodeDirectory; a flat ``.pkg`` by its xar table-of-contents checksum;
a ``.dmg`` by the CodeDirectory of the image's own embedded signature (koly trailer). The cdhash is
the digest of the whole CodeDirectory blob, truncated to 20 bytes. Blocking; every read is bounded.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import plistlib
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from xml.etree import ElementTree

from uploader.formats import superblob, udif, xar
from uploader.preflight.macho import MachOFormatError, read_slice, slices_in_header_order
from uploader.preflight.source import RegionSource
from uploader.staple.files import StapleInputError, opened_artifact, opened_in_bundle

__all__ = ["StapleInputError", "TicketKey", "app_ticket_key", "dmg_ticket_key",
           "main_executable", "pkg_ticket_key", "read_exact", "read_koly"]

DIGEST_SHA1 = 1
DIGEST_SHA256 = 2
_HASHES = {DIGEST_SHA1: "sha1", DIGEST_SHA256: "sha256"}
MAX_PLIST_BYTES = 4 << 20
MAX_SIGNATURE_BYTES = 64 << 20


@dataclass(frozen=True)
class TicketKey:
    digest_type: int  # 1 SHA-1, 2 SHA-256
    cdhash: bytes  # 20 bytes

    @property
    def record_name(self) -> str:
        return f"2/{self.digest_type}/{self.cdhash.hex()}"


def main_executable(bundle: Path) -> str:
    """The main executable's name, from ``Contents/Info.plist`` (a regular file in the bundle)."""
    info = bundle / "Contents" / "Info.plist"
    try:
        with opened_in_bundle(bundle, "Contents", "Info.plist") as f:
            if os.fstat(f.fileno()).st_size > MAX_PLIST_BYTES:
                raise StapleInputError(f"{info}: larger than {MAX_PLIST_BYTES} bytes; not an Info.plist")
            name = plistlib.loads(f.read(MAX_PLIST_BYTES)).get("CFBundleExecutable")
    except StapleInputError as error:
        raise StapleInputError(f"{info}: cannot read CFBundleExecutable ({error.why}); is "
                               f"{bundle.name} a complete, signed app bundle?") from None
    except (OSError, plistlib.InvalidFileException, ValueError, AttributeError) as error:
        raise StapleInputError(f"{info}: cannot read CFBundleExecutable ({error}); is "
                               f"{bundle.name} a complete, signed app bundle?") from None
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        raise StapleInputError(f"{info}: CFBundleExecutable is missing or not a plain file name")
    return name


def app_ticket_key(bundle: Path) -> TicketKey:
    name = main_executable(bundle)
    executable = bundle / "Contents" / "MacOS" / name
    with contextlib.ExitStack() as stack:
        try:
            f = stack.enter_context(opened_in_bundle(bundle, "Contents", "MacOS", name))
        except StapleInputError as error:
            raise StapleInputError(f"{executable}: the main executable named by Info.plist is "
                                   f"missing or not a regular file ({error.why})") from None
        size = os.fstat(f.fileno()).st_size
        source = RegionSource(f, 0, size)
        try:
            offset, length = slices_in_header_order(source)[0]  # the first fat_arch entry
            first = read_slice(source, offset, length)
        except MachOFormatError as error:
            raise StapleInputError(f"{executable}: not a Mach-O executable ({error})") from None
        if first.code_signature is None:
            raise StapleInputError(f"{executable}: not signed; sign the app with your Developer "
                                   "ID and notarise it before stapling")
        sig_offset, sig_size = first.code_signature
        signature = read_exact(f, first.offset + sig_offset, min(sig_size, MAX_SIGNATURE_BYTES))
    return cdhash_of_signature(signature, executable)


def cdhash_of_signature(signature: bytes, where: Path) -> TicketKey:
    """The cdhash of the preferred CodeDirectory in an embedded-signature SuperBlob."""
    try:
        blobs = superblob.read_blobs(signature)
    except superblob.SignatureFormatError:
        raise StapleInputError(f"{where}: code signature is malformed; sign it again") from None
    keys: list[TicketKey] = []
    for slot, blob in blobs:
        if (not superblob.is_code_directory_slot(slot) or len(blob) < 40
                or superblob.magic_of(blob) != superblob.CODE_DIRECTORY):
            continue
        hash_type = blob[37]
        if hash_type in _HASHES:
            keys.append(TicketKey(hash_type, hashlib.new(_HASHES[hash_type], blob).digest()[:20]))
    if not keys:
        raise StapleInputError(f"{where}: no SHA-1 or SHA-256 CodeDirectory in its signature")
    return max(keys, key=lambda k: k.digest_type)  # prefer SHA-256


def pkg_ticket_key(path: Path) -> TicketKey:
    with opened_artifact(path) as f:
        try:
            header = xar.read_header(f.read(xar.HEADER.size))
        except xar.XarError:
            header = None
        if header is None or header.toc_compressed > MAX_PLIST_BYTES * 4 or \
                header.toc_size > MAX_PLIST_BYTES * 16:
            raise StapleInputError(f"{path}: not a flat package (no xar header); only flat "
                                   "installer packages can be stapled")
        checksum = _toc(f, path, header).find("toc/checksum")
        if checksum is None:
            raise StapleInputError(f"{path}: the package has no table-of-contents checksum")
        style = (checksum.get("style") or "").lower()
        digest_type = {"sha1": DIGEST_SHA1, "sha256": DIGEST_SHA256}.get(style)
        if digest_type is None or header.checksum_algorithm not in (xar.CHECKSUM_SHA1,
                                                                    xar.CHECKSUM_SHA256):
            raise StapleInputError(f"{path}: table-of-contents checksum {style!r} is not SHA-1 "
                                   "or SHA-256; rebuild the package with productbuild")
        offset, size = xar.heap_range(checksum)
        if offset < 0 or not 20 <= size <= 64:
            raise StapleInputError(f"{path}: table-of-contents checksum location is invalid")
        digest = read_exact(f, header.heap_start + offset, size)
    return TicketKey(digest_type, digest[:20])


def _toc(f: IO[bytes], path: Path, header: xar.XarHeader) -> ElementTree.Element:
    try:
        inflate = zlib.decompressobj()
        xml = inflate.decompress(read_exact(f, header.header_size, header.toc_compressed),
                                 header.toc_size)
        if inflate.unconsumed_tail:  # inflates past its declared size: refuse, do not grow
            raise StapleInputError(f"{path}: the table of contents is larger than declared")
        return ElementTree.fromstring(xml)
    except (zlib.error, ElementTree.ParseError) as error:
        raise StapleInputError(f"{path}: unreadable xar table of contents ({error})") from None


def read_koly(f: IO[bytes], path: Path) -> tuple[int, udif.Koly]:
    """(file size, the UDIF trailer's fields) of the disk image open as ``f``."""
    size = os.fstat(f.fileno()).st_size
    if size < udif.KOLY_SIZE:
        raise StapleInputError(f"{path}: not a disk image (too small)")
    trailer = read_exact(f, size - udif.KOLY_SIZE, udif.KOLY_SIZE)
    if not udif.is_koly(trailer):
        raise StapleInputError(f"{path}: not a UDIF disk image (no koly trailer)")
    return size, udif.read_koly(trailer)


def dmg_ticket_key(path: Path) -> TicketKey:
    with opened_artifact(path) as f:
        size, koly = read_koly(f, path)
        if not koly.signed:
            raise StapleInputError(f"{path}: the disk image is not signed; sign it (codesign) "
                                   "and notarise it before stapling")
        if (koly.signature_offset + koly.signature_length > size - udif.KOLY_SIZE
                or koly.signature_length > MAX_SIGNATURE_BYTES):
            raise StapleInputError(f"{path}: the disk image's signature lies outside the file")
        signature = read_exact(f, koly.signature_offset, koly.signature_length)
    return cdhash_of_signature(signature, path)


def read_exact(f: IO[bytes], offset: int, length: int) -> bytes:
    f.seek(offset)
    data = f.read(length)
    if len(data) != length:
        raise StapleInputError(f"{getattr(f, 'name', 'file')}: truncated")
    return data
