"""A small BER/DER reader: enough to walk CMS SignedData and DER entitlements.

Apple's CMS encoder writes indefinite-length BER (``30 80 … 00 00``), so lengths of 0x80 are
accepted on constructed values. Offsets are absolute positions in the buffer being walked.
Malformed input raises ``BerError``; nothing here trusts a length without a bounds check.
"""

from __future__ import annotations

from dataclasses import dataclass

UNIVERSAL, APPLICATION, CONTEXT, PRIVATE = 0, 1, 2, 3
BOOLEAN, INTEGER, OCTET_STRING, NULL, OID, UTF8_STRING, SEQUENCE, SET = 1, 2, 4, 5, 6, 12, 16, 17

_MAX_DEPTH = 64


class BerError(ValueError):
    """The bytes are not valid BER."""


@dataclass(frozen=True)
class Tlv:
    tag_class: int
    constructed: bool
    tag: int
    start: int  # first byte of the identifier
    content_start: int
    content_end: int  # exclusive; excludes the end-of-contents octets of indefinite forms
    end: int  # exclusive; first byte after this value

    def is_(self, tag_class: int, tag: int) -> bool:
        return self.tag_class == tag_class and self.tag == tag


def read_tlv(data: bytes, offset: int, limit: int | None = None, _depth: int = 0) -> Tlv:
    limit = len(data) if limit is None else limit
    if _depth > _MAX_DEPTH:
        raise BerError("nesting too deep")
    pos = offset
    if pos >= limit:
        raise BerError(f"truncated identifier at {pos}")
    first = data[pos]
    pos += 1
    tag_class, constructed, tag = first >> 6, bool(first & 0x20), first & 0x1F
    if tag == 0x1F:  # high tag number form
        tag = 0
        while True:
            if pos >= limit:
                raise BerError("truncated tag")
            byte = data[pos]
            pos += 1
            tag = (tag << 7) | (byte & 0x7F)
            if not byte & 0x80:
                break
    if pos >= limit:
        raise BerError(f"truncated length at {pos}")
    length_byte = data[pos]
    pos += 1
    if length_byte == 0x80:
        if not constructed:
            raise BerError("indefinite length on a primitive value")
        child = pos
        while True:
            if child + 2 > limit:
                raise BerError("missing end-of-contents")
            if data[child] == 0 and data[child + 1] == 0:
                return Tlv(tag_class, constructed, tag, offset, pos, child, child + 2)
            child = read_tlv(data, child, limit, _depth + 1).end
    if length_byte & 0x80:
        n = length_byte & 0x7F
        if n > 8 or pos + n > limit:
            raise BerError("bad long-form length")
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    else:
        length = length_byte
    if pos + length > limit:
        raise BerError(f"value at {offset} runs past its container")
    return Tlv(tag_class, constructed, tag, offset, pos, pos + length, pos + length)


def children(data: bytes, parent: Tlv) -> list[Tlv]:
    if not parent.constructed:
        raise BerError("primitive value has no children")
    out: list[Tlv] = []
    pos = parent.content_start
    while pos < parent.content_end:
        tlv = read_tlv(data, pos, parent.content_end)
        out.append(tlv)
        pos = tlv.end
    return out


def content(data: bytes, tlv: Tlv) -> bytes:
    return data[tlv.content_start : tlv.content_end]


def decode_oid(raw: bytes) -> str:
    if not raw:
        raise BerError("empty OID")
    arcs: list[int] = []
    value = 0
    if raw[-1] & 0x80 or len(raw) > 64:
        raise BerError("OID ends inside an arc, or is implausibly long")
    for byte in raw:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(a) for a in head + arcs[1:])


def decode_integer(raw: bytes) -> int:
    return int.from_bytes(raw, "big", signed=True)
