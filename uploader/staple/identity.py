"""Which code signature identifies an artifact, as the ticket lookup's record name.

From stapling.md: a ``.app`` is identified by its main executable's (first slice's) CodeDirectory
hash, preferring the SHA-256 CodeDirectory; a flat ``.pkg`` by its xar table-of-contents checksum;
a ``.dmg`` by the CodeDirectory of the image's own embedded signature (koly trailer). The cdhash is
the digest of the whole CodeDirectory blob, truncated to 20 bytes. Blocking; every read is bounded.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import plistlib
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from xml.etree import ElementTree

from uploader.inputs import InputKind, kind_by_name
from uploader.preflight.macho import MachOFormatError, read_slice, slices_in_header_order
from uploader.preflight.source import RegionSource
from uploader.staple.files import StapleInputError, opened_artifact, opened_in_bundle

__all__ = ["StapleInputError", "TicketKey", "app_ticket_key", "dmg_ticket_key", "kind_of",
           "main_executable", "pkg_ticket_key", "read_exact", "read_koly", "ticket_key_for"]

DIGEST_SHA1 = 1
DIGEST_SHA256 = 2
_HASHES = {DIGEST_SHA1: "sha1", DIGEST_SHA256: "sha256"}
_CODE_DIRECTORY = 0xFADE0C02
_EMBEDDED_SIGNATURE = 0xFADE0CC0
_CD_SLOTS = (0, *range(0x1000, 0x1005))
MAX_PLIST_BYTES = 4 << 20
MAX_SIGNATURE_BYTES = 64 << 20
XAR_HEADER = struct.Struct(">4sHHQQI")
KOLY_SIZE = 512
KOLY_SIGNATURE_FIELD = 0x128


@dataclass(frozen=True)
class TicketKey:
    digest_type: int  # 1 SHA-1, 2 SHA-256
    cdhash: bytes  # 20 bytes

    @property
    def record_name(self) -> str:
        return f"2/{self.digest_type}/{self.cdhash.hex()}"


def kind_of(path: Path) -> str:
    """"app", "pkg" or "dmg"; anything else cannot be stapled."""
    kind = kind_by_name(path)
    if kind is InputKind.BUNDLE and path.is_dir():
        return kind.value
    if kind in (InputKind.PKG, InputKind.DMG) and path.is_file():
        return kind.value
    if kind is InputKind.ZIP:
        raise StapleInputError(zip_cannot_be_stapled(path))
    if not path.exists():
        raise StapleInputError(f"{path}: no such file or folder")
    raise StapleInputError(f"{path}: only a .app bundle, a .dmg or a flat .pkg can be stapled")


def zip_cannot_be_stapled(path: Path) -> str:
    return (f"{path.name}: a zip cannot be stapled; staple the .app it was made from "
            f"(notaryd staple {path.stem}.app), then zip it again")


def ticket_key_for(path: Path) -> TicketKey:
    kind = kind_of(path)
    if kind == "app":
        return app_ticket_key(path)
    if kind == "pkg":
        return pkg_ticket_key(path)
    return dmg_ticket_key(path)


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
    if len(signature) < 12:
        raise StapleInputError(f"{where}: code signature truncated; sign it again")
    magic, length, count = struct.unpack_from(">III", signature)
    if magic != _EMBEDDED_SIGNATURE or length > len(signature) or 12 + 8 * count > length:
        raise StapleInputError(f"{where}: code signature is malformed; sign it again")
    keys: list[TicketKey] = []
    for index in range(count):
        slot, offset = struct.unpack_from(">II", signature, 12 + 8 * index)
        if slot not in _CD_SLOTS or offset + 40 > length:
            continue
        blob_magic, blob_length = struct.unpack_from(">II", signature, offset)
        if blob_magic != _CODE_DIRECTORY or offset + blob_length > length or blob_length < 40:
            continue
        hash_type = signature[offset + 37]
        if hash_type in _HASHES:
            blob = signature[offset : offset + blob_length]
            digest = hashlib.new(_HASHES[hash_type], blob).digest()[:20]
            keys.append(TicketKey(hash_type, digest))
    if not keys:
        raise StapleInputError(f"{where}: no SHA-1 or SHA-256 CodeDirectory in its signature")
    return max(keys, key=lambda k: k.digest_type)  # prefer SHA-256


def pkg_ticket_key(path: Path) -> TicketKey:
    with opened_artifact(path) as f:
        header = f.read(XAR_HEADER.size)
        if len(header) < XAR_HEADER.size:
            raise StapleInputError(f"{path}: not a flat package (xar header truncated)")
        magic, header_size, _version, toc_length, toc_size, algorithm = XAR_HEADER.unpack(header)
        if magic != b"xar!" or toc_length > MAX_PLIST_BYTES * 4 or toc_size > MAX_PLIST_BYTES * 16:
            raise StapleInputError(f"{path}: not a flat package (no xar header); only flat "
                                   "installer packages can be stapled")
        try:
            inflate = zlib.decompressobj()
            xml = inflate.decompress(read_exact(f, header_size, toc_length), toc_size)
            if inflate.unconsumed_tail:  # inflates past its declared size: refuse, do not grow
                raise StapleInputError(f"{path}: the table of contents is larger than declared")
            toc = ElementTree.fromstring(xml)
        except (zlib.error, ElementTree.ParseError) as error:
            raise StapleInputError(f"{path}: unreadable xar table of contents ({error})") from None
        checksum = toc.find("toc/checksum")
        if checksum is None:
            raise StapleInputError(f"{path}: the package has no table-of-contents checksum")
        style = (checksum.get("style") or "").lower()
        digest_type = {"sha1": DIGEST_SHA1, "sha256": DIGEST_SHA256}.get(style)
        if digest_type is None or algorithm not in (1, 3):
            raise StapleInputError(f"{path}: table-of-contents checksum {style!r} is not SHA-1 "
                                   "or SHA-256; rebuild the package with productbuild")
        offset = int(checksum.findtext("offset") or "-1")
        size = int(checksum.findtext("size") or "0")
        if offset < 0 or not 20 <= size <= 64:
            raise StapleInputError(f"{path}: table-of-contents checksum location is invalid")
        digest = read_exact(f, header_size + toc_length + offset, size)
    return TicketKey(digest_type, digest[:20])


def read_koly(f: IO[bytes], path: Path) -> tuple[int, int, int]:
    """(file size, code signature offset, code signature length) from the UDIF trailer."""
    size = os.fstat(f.fileno()).st_size
    if size < KOLY_SIZE:
        raise StapleInputError(f"{path}: not a disk image (too small)")
    trailer = read_exact(f, size - KOLY_SIZE, KOLY_SIZE)
    if trailer[:4] != b"koly":
        raise StapleInputError(f"{path}: not a UDIF disk image (no koly trailer)")
    # rcodesign dmg.rs KolyTrailer: code_signature_offset/size follow plist and reserved1[64]
    sig_offset, sig_length = struct.unpack_from(">QQ", trailer, KOLY_SIGNATURE_FIELD)
    return size, sig_offset, sig_length


def dmg_ticket_key(path: Path) -> TicketKey:
    with opened_artifact(path) as f:
        size, sig_offset, sig_length = read_koly(f, path)
        if sig_length == 0:
            raise StapleInputError(f"{path}: the disk image is not signed; sign it (codesign) "
                                   "and notarise it before stapling")
        if sig_offset + sig_length > size - KOLY_SIZE or sig_length > MAX_SIGNATURE_BYTES:
            raise StapleInputError(f"{path}: the disk image's signature lies outside the file")
        signature = read_exact(f, sig_offset, sig_length)
    return cdhash_of_signature(signature, path)


def read_exact(f: IO[bytes], offset: int, length: int) -> bytes:
    f.seek(offset)
    data = f.read(length)
    if len(data) != length:
        raise StapleInputError(f"{getattr(f, 'name', 'file')}: truncated")
    return data
