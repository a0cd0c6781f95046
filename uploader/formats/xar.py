"""Flat packages: the xar header and where the table-of-contents checksum lies.

(indygreg/apple-platform-rs ``apple-xar/src/format.rs``:) big-endian header ``"xar!"``, header
size u16, version u16, compressed TOC length u64, uncompressed TOC length u64, checksum
algorithm u32; then the zlib-compressed XML table of contents; then the heap. ``<toc>``'s
``<checksum style="sha1|sha256">`` gives the heap offset and size of the digest of the
*compressed* table of contents: what a package's signature covers and its ticket is named by.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from xml.etree import ElementTree

XAR_MAGIC = b"xar!"
HEADER = struct.Struct(">4sHHQQI")
CHECKSUM_NONE, CHECKSUM_SHA1, CHECKSUM_MD5, CHECKSUM_SHA256 = 0, 1, 2, 3


class XarError(ValueError):
    """Not a xar archive we can read."""


@dataclass(frozen=True)
class XarHeader:
    header_size: int
    version: int
    toc_compressed: int  # bytes of the zlib-compressed table of contents
    toc_size: int  # bytes once inflated (as declared)
    checksum_algorithm: int

    @property
    def heap_start(self) -> int:
        return self.header_size + self.toc_compressed


def read_header(data: bytes) -> XarHeader:
    """The header from the first ``HEADER.size`` bytes; ``XarError`` when it is not one."""
    if len(data) < HEADER.size:
        raise XarError("xar header truncated")
    magic, header_size, version, toc_compressed, toc_size, algorithm = HEADER.unpack_from(data)
    if magic != XAR_MAGIC or header_size < HEADER.size:
        raise XarError("not a xar archive")
    return XarHeader(header_size, version, toc_compressed, toc_size, algorithm)


def heap_range(node: ElementTree.Element) -> tuple[int, int]:
    """(offset, size) in the heap that a ``<checksum>``, ``<signature>`` ... node names;
    (-1, -1) for a missing or malformed field."""
    try:
        return int(node.findtext("offset") or -1), int(node.findtext("size") or -1)
    except ValueError:
        return -1, -1
