"""Flat installer packages (.pkg): a xar archive whose components carry cpio payloads.

xar (``uploader.formats.xar`` reads the header): the zlib-compressed XML table of contents,
then the heap, where each file's ``<data>`` gives its offset, archived length and encoding. A component's ``Payload`` (and
``Scripts``) is a cpio archive compressed with gzip, pbzx, bzip2 or xz.

Paths follow the notary log: ``Game.pkg/Game-Component.pkg Contents/Payload/Applications/…``.

The table of contents is inflated and parsed as a stream within ``Limits`` (bytes, elements,
folder depth; no DTD, so no entity expansion), and every heap entry and payload is read through
metered decompressors. An entry that cannot be read is an error on that entry's path.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import stat
import zlib
from typing import IO, cast
from xml.etree import ElementTree

from uploader.formats.xar import HEADER, XarError, read_header
from uploader.preflight import cpio
from uploader.preflight.limits import LimitError, Metered
from uploader.preflight.source import ForwardSource, Readable, RegionFile, RegionSource
from uploader.preflight.streams import PbzxReader, ZlibReader
from uploader.preflight.walk import Scan
from uploader.preflight.xar_signature import check_pkg_signature

_PAYLOAD_NAMES = ("Payload", "Scripts")
_TOC_READ = 64 << 10


def scan_pkg(scan: Scan, fileobj: IO[bytes], display_root: str) -> None:
    fileobj.seek(0)
    header = read_header(fileobj.read(HEADER.size))
    toc_size, toc_compressed = header.toc_size, header.toc_compressed
    if toc_size > scan.limits.max_toc_bytes:
        raise LimitError(
            f"xar table of contents declares {toc_size:,} bytes; preflight reads up to "
            f"{scan.limits.max_toc_bytes:,}"
        )
    # zlib never grows data by more than a few bytes per 16 KiB block: a larger compressed TOC
    # is not one preflight would inflate anyway. Read once, for the walk and the signature.
    if toc_compressed > scan.limits.max_toc_bytes + _TOC_READ:
        raise LimitError(f"xar table of contents occupies {toc_compressed:,} bytes compressed")
    fileobj.seek(header.header_size)
    compressed = fileobj.read(toc_compressed)
    toc = _read_toc(scan, io.BytesIO(compressed))
    heap_start = header.heap_start
    scan.extend(
        check_pkg_signature(fileobj, display_root, scan.anchors, compressed, toc, heap_start)
    )
    top = toc.find("toc")
    if top is None:
        raise XarError("xar table of contents has no <toc>")
    _walk(scan, fileobj, heap_start, top, display_root, depth=0)


def _read_toc(scan: Scan, compressed: IO[bytes]) -> ElementTree.Element:
    """Inflate and parse the table of contents, never holding more than the limits allow."""
    try:
        return _parse_toc(scan, compressed)
    except LookupError as exc:  # expat looks up the encoding the XML declaration names
        raise XarError(f"xar table of contents declares an unknown encoding ({exc})") from exc


def _parse_toc(scan: Scan, compressed: IO[bytes]) -> ElementTree.Element:
    limits = scan.limits
    inflater = zlib.decompressobj()
    parser = ElementTree.XMLParser(target=_CountingBuilder(limits.max_toc_elements))
    produced = 0
    data = b""
    while not inflater.eof:
        if not data:
            data = inflater.unconsumed_tail or compressed.read(_TOC_READ)
            if not data:
                raise XarError("xar table of contents is truncated")
        out = inflater.decompress(data, _TOC_READ)
        data = inflater.unconsumed_tail
        produced += len(out)
        scan.budget.charge(len(out))
        if produced > limits.max_toc_bytes:
            raise LimitError(
                f"xar table of contents inflates to more than {limits.max_toc_bytes:,} bytes"
            )
        if b"<!DOCTYPE" in out or b"<!ENTITY" in out:  # a TOC has none; entities could expand
            raise XarError("xar table of contents declares a DTD")
        parser.feed(out)
    root: ElementTree.Element = parser.close()
    return root


class _CountingBuilder(ElementTree.TreeBuilder):
    def __init__(self, max_elements: int) -> None:
        super().__init__()
        self._max = self._left = max_elements

    def start(self, tag: str, attrs: dict[str, str]) -> ElementTree.Element:
        self._left -= 1
        if self._left < 0:
            raise LimitError(f"xar table of contents has more than {self._max:,} elements")
        return super().start(tag, attrs)


def _walk(
    scan: Scan, fileobj: IO[bytes], heap: int, node: ElementTree.Element, prefix: str, depth: int
) -> None:
    if depth > scan.limits.max_folder_depth:
        raise LimitError(f"xar folders nested more than {scan.limits.max_folder_depth} deep")
    for entry in node.findall("file"):
        name = entry.findtext("name") or ""
        kind = entry.findtext("type") or "file"
        if kind == "directory":
            # A component package directory shows up as "X.pkg Contents" in notary paths.
            folder = f"{name} Contents" if depth == 0 and name.endswith(".pkg") else name
            _walk(scan, fileobj, heap, entry, f"{prefix}/{folder}", depth + 1)
        elif kind == "file":
            path = f"{prefix}/{name}"
            with scan.reading(path):
                _visit_file(scan, fileobj, heap, entry, path, name)


def _visit_file(
    scan: Scan, fileobj: IO[bytes], heap: int, entry: ElementTree.Element, path: str, name: str
) -> None:
    data = entry.find("data")
    if data is None:
        return
    offset = _field(data, "offset", 0)
    length = _field(data, "length", 0)
    declared = _field(data, "size", -1)  # the extracted size; xar always writes it
    size = declared if declared >= 0 else length
    encoding_node = data.find("encoding")
    encoding = (encoding_node.get("style") if encoding_node is not None else None) or ""
    raw = io.BufferedReader(RegionFile(fileobj, heap + offset, length))
    decoded = _decode(raw, encoding)
    if decoded is not raw:
        metered = Metered(
            decoded, scan.budget, f"xar entry {name!r}", size if declared >= 0 else None
        )
        decoded = io.BufferedReader(metered)
    if name in _PAYLOAD_NAMES:
        _scan_payload(scan, decoded, path)
    elif decoded is raw:
        scan.visit(path, RegionSource(fileobj, heap + offset, length))
    else:
        scan.visit(path, ForwardSource(decoded, size))


def _field(data: ElementTree.Element, tag: str, default: int) -> int:
    text = data.findtext(tag)
    if text is None:
        return default
    text = text.strip()
    if not text.isdigit() or not text.isascii():
        raise XarError(f"xar <{tag}> {text[:40]!r} is not a byte count")
    return int(text)


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
    decompressor: Readable | None
    if head.startswith(b"\x1f\x8b"):
        decompressor = gzip.GzipFile(fileobj=buffered)
    elif head.startswith(b"pbzx"):
        decompressor = PbzxReader(buffered, scan.limits.max_pbzx_chunk)
    elif head.startswith(b"BZh"):
        decompressor = bz2.BZ2File(buffered)
    elif head.startswith(b"\xfd7zXZ"):
        decompressor = lzma.LZMAFile(buffered)  # noqa: SIM115 - closed with the xar file
    else:
        decompressor = None
    archive: Readable = (
        buffered
        if decompressor is None
        else io.BufferedReader(Metered(decompressor, scan.budget, f"{path} payload"))
    )
    with scan.seals_of(path):
        for entry, reader in cpio.iter_entries(archive, scan.limits.max_cpio_name):
            if stat.S_ISLNK(entry.mode):
                target = reader.read(4096).decode("utf-8", "replace")
                scan.seals.visit_link(f"{path}/{entry.name.removeprefix('./').lstrip('/')}", target)
            if not entry.is_regular_file:
                scan.count_member()
                continue
            relative = entry.name.removeprefix("./").lstrip("/")
            member_path = f"{path}/{relative}"
            if not scan.admit(member_path, relative):
                continue
            with scan.reading(member_path):
                scan.inspect(member_path, ForwardSource(reader, entry.size))
