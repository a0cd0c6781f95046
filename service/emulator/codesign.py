"""The emulated service's own reading of the code signatures in an uploaded archive.

Apple publishes a ticket for every code signature it accepted. This module finds them, with
no help from ``uploader.staple.identity`` (the client's code), so that a wrong derivation on
either side makes the lookup miss instead of agreeing by construction:

* a zip: each top-level ``X.app``'s main executable (``CFBundleExecutable``); every slice of a
  universal binary gets its own entry, in fat-header order;
* a flat ``.pkg``: the xar table-of-contents checksum (its SHA-1/SHA-256 type is the digest type);
* a ``.dmg``: the image's own embedded signature, found through the koly trailer.

A signature's entry uses its SHA-256 CodeDirectory when it has one, else SHA-1; the cdhash is
that digest of the whole CodeDirectory, first 20 bytes. Blocking; every read is bounded.
"""

from __future__ import annotations

import hashlib
import io
import plistlib
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from xml.etree import ElementTree

MAX_MEMBER_BYTES = 64 << 20
MAX_TOC_BYTES = 16 << 20
_ARCHITECTURES = {7: "i386", 0x01000007: "x86_64", 12: "arm", 0x0100000C: "arm64"}
_ALGORITHMS = {1: ("sha1", "SHA-1"), 2: ("sha256", "SHA-256")}


class NotSigned(ValueError):
    """The bytes hold no signature the service could issue a ticket for."""


@dataclass(frozen=True)
class SignedCode:
    """One ticketed code signature, as the developer log's ``ticketContents`` lists it."""

    path: str
    arch: str | None
    digest_type: int  # 1 SHA-1, 2 SHA-256
    cdhash: bytes  # 20 bytes

    @property
    def record_name(self) -> str:
        return f"2/{self.digest_type}/{self.cdhash.hex()}"

    def log_entry(self) -> dict[str, object]:
        return {"path": self.path, "digestAlgorithm": _ALGORITHMS[self.digest_type][1],
                "cdhash": self.cdhash.hex(), "arch": self.arch}


def signed_code_in(path: Path, name: str) -> list[SignedCode]:
    """Every signature in the archive at ``path`` (submitted as ``name``); [] when none."""
    suffix = Path(name).suffix.lower()
    with open(path, "rb") as archive:
        try:
            if suffix == ".pkg":
                return [_package(archive, name)]
            if suffix == ".dmg":
                return [_disk_image(archive, name)]
            if zipfile.is_zipfile(archive):
                return _zip(archive, name)
        except (NotSigned, zipfile.BadZipFile, ValueError, KeyError, struct.error, zlib.error,
                ElementTree.ParseError):
            return []
    return []


def _preferred(superblob: bytes) -> tuple[int, bytes]:
    """(hash type, cdhash) of the SuperBlob's SHA-256 CodeDirectory, else its SHA-1 one."""
    magic, _length, count = struct.unpack_from(">3I", superblob)
    if magic != 0xFADE0CC0:
        raise NotSigned("no embedded signature")
    digests: dict[int, bytes] = {}
    for slot, start in struct.iter_unpack(">2I", superblob[12 : 12 + 8 * count]):
        is_directory_slot = slot == 0 or 0x1000 <= slot <= 0x1004
        if not is_directory_slot or superblob[start : start + 4] != b"\xfa\xde\x0c\x02":
            continue
        (size,) = struct.unpack_from(">I", superblob, start + 4)
        directory = superblob[start : start + size]
        kind = directory[37]  # hashType follows hashSize, after nine 32-bit fields
        if kind in _ALGORITHMS:
            digests[kind] = hashlib.new(_ALGORITHMS[kind][0], directory).digest()[:20]
    if not digests:
        raise NotSigned("no CodeDirectory")
    best = max(digests)
    return best, digests[best]


def _slices(binary: bytes) -> list[tuple[bytes, str | None]]:
    """(slice bytes, architecture) in fat-header order; a thin file is its own single slice."""
    magic = binary[:4]
    if magic not in (b"\xca\xfe\xba\xbe", b"\xca\xfe\xba\xbf"):
        return [(binary, None)]
    wide = magic == b"\xca\xfe\xba\xbf"
    (count,) = struct.unpack_from(">I", binary, 4)
    layout, step = (">iiQQII", 32) if wide else (">iiIII", 20)
    found = []
    for index in range(count):
        cpu, _sub, start, size, *_ = struct.unpack_from(layout, binary, 8 + step * index)
        found.append((binary[start : start + size], _ARCHITECTURES.get(cpu)))
    return found


def _signature_of_thin(thin: bytes) -> bytes:
    order = "<" if thin[:4] in (b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe") else ">"
    magic, _cpu, _sub, _type, ncmds, _size, _flags = struct.unpack_from(order + "7I", thin)
    position = 32 if magic == 0xFEEDFACF else 28
    for _ in range(ncmds):
        command, length = struct.unpack_from(order + "2I", thin, position)
        if command == 0x1D:  # LC_CODE_SIGNATURE: dataoff, datasize
            start, size = struct.unpack_from(order + "2I", thin, position + 8)
            return thin[start : start + size]
        position += max(length, 8)
    raise NotSigned("no LC_CODE_SIGNATURE")


def _zip(archive: BinaryIO, name: str) -> list[SignedCode]:
    found: list[SignedCode] = []
    with zipfile.ZipFile(archive) as zipped:
        members = {info.filename: info for info in zipped.infolist()}
        for plist in sorted(m for m in members if m.count("/") == 2
                            and m.endswith(".app/Contents/Info.plist")):
            bundle = plist.split("/", 1)[0]
            try:
                info = plistlib.loads(_member(zipped, members[plist]))
                executable = f"{bundle}/Contents/MacOS/{info['CFBundleExecutable']}"
                binary = _member(zipped, members[executable])
            except (KeyError, TypeError, plistlib.InvalidFileException, NotSigned):
                continue
            for thin, arch in _slices(binary):
                try:
                    kind, cdhash = _preferred(_signature_of_thin(thin))
                except (NotSigned, struct.error):
                    continue
                found.append(SignedCode(f"{name}/{executable}", arch, kind, cdhash))
    return found


def _member(zipped: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    if info.file_size > MAX_MEMBER_BYTES:
        raise NotSigned(f"{info.filename} is larger than the emulator reads")
    with zipped.open(info) as member:
        return member.read(MAX_MEMBER_BYTES + 1)[:MAX_MEMBER_BYTES]


def _package(archive: BinaryIO, name: str) -> SignedCode:
    head = archive.read(28)
    magic, header_size, _version, packed, unpacked, _algorithm = struct.unpack(">4sHHQQI", head)
    if magic != b"xar!" or packed > MAX_TOC_BYTES or unpacked > MAX_TOC_BYTES:
        raise NotSigned("not a flat package")
    archive.seek(header_size)
    inflater = zlib.decompressobj()
    toc = ElementTree.fromstring(inflater.decompress(archive.read(packed), unpacked))
    checksum = toc.find("toc/checksum")
    if checksum is None:
        raise NotSigned("no TOC checksum")
    kind = {"sha1": 1, "sha256": 2}[(checksum.get("style") or "").lower()]
    archive.seek(header_size + packed + int(checksum.findtext("offset") or "0"))
    digest = archive.read(int(checksum.findtext("size") or "0"))
    return SignedCode(name, None, kind, digest[:20])


def _disk_image(archive: BinaryIO, name: str) -> SignedCode:
    archive.seek(0, io.SEEK_END)
    end = archive.tell()
    archive.seek(end - 512)
    trailer = archive.read(512)
    if trailer[:4] != b"koly":
        raise NotSigned("not a UDIF image")
    start, size = struct.unpack_from(">QQ", trailer, 0x128)  # CodeSignatureOffset/Length
    if size == 0 or start + size > end or size > MAX_MEMBER_BYTES:
        raise NotSigned("the image is not signed")
    archive.seek(start)
    kind, cdhash = _preferred(archive.read(size))
    return SignedCode(name, None, kind, cdhash)
