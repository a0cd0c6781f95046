"""Flat installer packages (.pkg): a xar archive whose components carry cpio payloads.

xar (indygreg/apple-platform-rs ``apple-xar/src/format.rs``): big-endian header ``"xar!"``,
header size u16, version u16, compressed TOC length u64, uncompressed TOC length u64, checksum
algorithm u32; then the zlib-compressed XML table of contents; then the heap, where each file's
``<data>`` gives its offset, archived length and encoding. A component's ``Payload`` (and
``Scripts``) is a cpio archive compressed with gzip, pbzx, bzip2 or xz.

Paths follow the notary log: ``Game.pkg/Game-Component.pkg Contents/Payload/Applications/…``.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import stat
import struct
import zlib
from typing import IO, cast
from xml.etree import ElementTree

from uploader.preflight import cpio
from uploader.preflight.source import ForwardSource, Readable, RegionFile, RegionSource
from uploader.preflight.streams import PbzxReader, ZlibReader
from uploader.preflight.walk import Scan
from uploader.preflight.xar_signature import check_pkg_signature

_HEADER = struct.Struct(">4sHHQQI")
_MAX_TOC_BYTES = 64 << 20
_PAYLOAD_NAMES = ("Payload", "Scripts")


class XarError(ValueError):
    """Not a xar archive we can read."""


def scan_pkg(scan: Scan, fileobj: IO[bytes], display_root: str) -> None:
    scan.issues.extend(check_pkg_signature(fileobj, display_root, scan.anchors))
    fileobj.seek(0)
    header = fileobj.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise XarError("xar header truncated")
    magic, header_size, _version, toc_compressed, toc_size, _cksum = _HEADER.unpack(header)
    if magic != b"xar!" or toc_size > _MAX_TOC_BYTES:
        raise XarError("not a xar archive, or its table of contents is implausibly large")
    fileobj.seek(header_size)
    toc = ElementTree.fromstring(zlib.decompress(fileobj.read(toc_compressed)))
    heap_start = header_size + toc_compressed
    top = toc.find("toc")
    if top is None:
        raise XarError("xar table of contents has no <toc>")
    _walk(scan, fileobj, heap_start, top, display_root, depth=0)


def _walk(
    scan: Scan, fileobj: IO[bytes], heap: int, node: ElementTree.Element, prefix: str, depth: int
) -> None:
    for entry in node.findall("file"):
        name = entry.findtext("name") or ""
        kind = entry.findtext("type") or "file"
        if kind == "directory":
            # A component package directory shows up as "X.pkg Contents" in notary paths.
            folder = f"{name} Contents" if depth == 0 and name.endswith(".pkg") else name
            _walk(scan, fileobj, heap, entry, f"{prefix}/{folder}", depth + 1)
        elif kind == "file":
            _visit_file(scan, fileobj, heap, entry, f"{prefix}/{name}", name)


def _visit_file(
    scan: Scan, fileobj: IO[bytes], heap: int, entry: ElementTree.Element, path: str, name: str
) -> None:
    data = entry.find("data")
    if data is None:
        return
    offset = int(data.findtext("offset") or 0)
    length = int(data.findtext("length") or 0)
    size = int(data.findtext("size") or length)
    encoding_node = data.find("encoding")
    encoding = (encoding_node.get("style") if encoding_node is not None else None) or ""
    raw = io.BufferedReader(RegionFile(fileobj, heap + offset, length))
    decoded = _decode(raw, encoding)
    if name in _PAYLOAD_NAMES:
        _scan_payload(scan, decoded, path)
    elif decoded is raw:
        scan.visit(path, RegionSource(fileobj, heap + offset, length))
    else:
        scan.visit(path, ForwardSource(decoded, size))


def _decode(raw: IO[bytes], encoding: str) -> IO[bytes]:
    if "gzip" in encoding:
        return io.BufferedReader(ZlibReader(raw))
    if "bzip2" in encoding:
        return bz2.BZ2File(raw)
    if "lzma" in encoding or "xz" in encoding:
        return lzma.LZMAFile(raw)
    return raw


def _scan_payload(scan: Scan, stream: IO[bytes], path: str) -> None:
    buffered = (
        stream
        if isinstance(stream, io.BufferedReader)
        else io.BufferedReader(cast(io.RawIOBase, stream))
    )
    head = buffered.peek(6)[:6]
    archive: Readable
    if head.startswith(b"\x1f\x8b"):
        archive = gzip.GzipFile(fileobj=buffered)
    elif head.startswith(b"pbzx"):
        archive = io.BufferedReader(PbzxReader(buffered))
    elif head.startswith(b"BZh"):
        archive = bz2.BZ2File(buffered)
    elif head.startswith(b"\xfd7zXZ"):
        archive = lzma.LZMAFile(buffered)  # noqa: SIM115 - closed with the xar file
    else:
        archive = buffered
    for entry, reader in cpio.iter_entries(archive):
        if stat.S_ISLNK(entry.mode):
            target = reader.read(4096).decode("utf-8", "replace")
            scan.seals.visit_link(f"{path}/{entry.name.removeprefix('./').lstrip('/')}", target)
        if not entry.is_regular_file:
            continue
        relative = entry.name.removeprefix("./").lstrip("/")
        member_path = f"{path}/{relative}"
        scan.check_name(member_path, relative)
        scan.visit(member_path, ForwardSource(reader, entry.size))
    scan.issues.extend(scan.seals.finish(path))
