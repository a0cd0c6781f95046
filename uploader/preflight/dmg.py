"""UDIF disk images (.dmg): the image's own code signature, and a precise "not inspected".

The last 512 bytes are the big-endian "koly" trailer, read by ``uploader.formats.udif``: where
the XML plist and the embedded code signature lie. The signature is a SuperBlob like a Mach-O's; its
CodeDirectory hashes the image bytes before it (rcodesign ``apple-codesign/src/dmg.rs``), so it
is checked with the same page, CMS binding and Developer ID rules.

The plist's ``resource-fork/blkx`` entries name each partition and list its chunks ("mish"
tables: zero, raw, ADC, zlib, bzip2, LZFSE, LZMA). The file systems themselves (HFS+, APFS) are
not read: no well-kept Python library reads them (libyal's bindings are experimental; see
shared/reference/preflight.md section 4), so the finding names every partition and chunk
format that was left unread instead of passing silently.
"""

from __future__ import annotations

import plistlib
import struct
from collections import Counter

from cryptography.exceptions import UnsupportedAlgorithm

from uploader.formats.superblob import SignatureFormatError
from uploader.formats.udif import KOLY_SIZE, is_koly, read_koly
from uploader.preflight import messages as msg
from uploader.preflight.cms import CmsError, parse_signed_data
from uploader.preflight.cms_binding import binding_problems
from uploader.preflight.codedirectory import read_signature_blobs
from uploader.preflight.developer_id import TrustAnchors, judge
from uploader.preflight.messages import Severity
from uploader.preflight.pages import page_problems
from uploader.preflight.report import PreflightIssue
from uploader.preflight.seal import PLIST_ERRORS
from uploader.preflight.source import ByteSource

_MAX_PLIST_BYTES = 16 << 20
_MAX_SIGNATURE_BYTES = 64 << 20
_MAX_PARTITIONS = 64
_MISH_HEADER = 204
_CHUNK = struct.Struct(">IIQQQQ")
_MAX_CHUNKS = 1 << 20
CHUNK_FORMATS = {
    0x00000000: "zero-fill",
    0x00000001: "raw",
    0x00000002: "ignored",
    0x80000004: "ADC",
    0x80000005: "zlib",
    0x80000006: "bzip2",
    0x80000007: "LZFSE",
    0x80000008: "LZMA",
}
_NOT_DATA = {0x7FFFFFFE, 0xFFFFFFFF}  # comment and terminator entries


def inspect_dmg(path: str, source: ByteSource, anchors: TrustAnchors) -> list[PreflightIssue]:
    """Findings for a disk image; always ends with the warning naming what was not read."""
    trailer = source.read_at(source.size - KOLY_SIZE, KOLY_SIZE) if source.size >= KOLY_SIZE else b""
    if not is_koly(trailer):
        return [_not_inspected(path, "it has no UDIF trailer ('koly'), so it was not read")]
    koly = read_koly(trailer)
    issues: list[PreflightIssue] = []
    if koly.signed:
        issues.extend(_signature_findings(path, source, koly.signature_offset,
                                          koly.signature_length, anchors))
    partitions = _partitions(source, koly.plist_offset, koly.plist_length)
    unsigned = "" if koly.signed else "; the image itself is not signed, so it cannot be stapled"
    issues.append(_not_inspected(path, f"{partitions}{unsigned}"))
    return issues


def _signature_findings(
    path: str, source: ByteSource, offset: int, size: int, anchors: TrustAnchors
) -> list[PreflightIssue]:
    def issue(message: str, detail: str) -> PreflightIssue:
        return PreflightIssue(Severity.ERROR, path, message, None, detail)

    if offset + size > source.size or size > _MAX_SIGNATURE_BYTES:
        return [issue(msg.INVALID_SIGNATURE, "the koly trailer's code signature lies outside")]
    try:
        blobs = read_signature_blobs(source.read_at(offset, size))
    except SignatureFormatError as exc:
        return [issue(msg.INVALID_SIGNATURE, f"disk image signature: {exc}")]
    problems = page_problems(source, 0, offset, blobs.directories)
    found = [issue(msg.INVALID_SIGNATURE, f"disk image signature: {p}") for p in problems]
    cms = blobs.cms
    if cms is None:
        found.append(issue(msg.NOT_DEVELOPER_ID, "the disk image is signed ad hoc"))
        return found
    found += [
        issue(msg.INVALID_SIGNATURE, f"disk image signature: {p}")
        for p in binding_problems(cms, blobs.directories)
    ]
    try:
        verdict = judge(parse_signed_data(cms), anchors)
    except (CmsError, ValueError, UnsupportedAlgorithm) as exc:  # certificates parse lazily
        return [*found, issue(msg.INVALID_SIGNATURE, f"disk image signature: {exc}")]
    if not verdict.is_developer_id:
        found.append(issue(msg.NOT_DEVELOPER_ID, f"disk image signature: {verdict.problem}"))
    return found


def _partitions(source: ByteSource, offset: int, length: int) -> str:
    """What the image holds that preflight did not read, in one sentence."""
    if length == 0 or length > _MAX_PLIST_BYTES or offset + length > source.size:
        return "its partition table could not be read, so nothing inside it was checked"
    try:
        plist = plistlib.loads(source.read_at(offset, length))
        entries = plist["resource-fork"]["blkx"]
    except PLIST_ERRORS:
        return "its partition table could not be read, so nothing inside it was checked"
    described = []
    for entry in entries[:_MAX_PARTITIONS] if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        name = entry.get("CFName") or entry.get("Name") or "unnamed"
        formats = _chunk_formats(entry.get("Data"))
        if formats:
            described.append(f"{name} ({', '.join(formats)})")
    if not described:
        return "it lists no partitions, so nothing inside it was checked"
    return (
        "the HFS+/APFS file systems inside were not read (no well-kept library reads them), so "
        "no code inside was checked; partitions: " + "; ".join(described)
    )


def _chunk_formats(mish: object) -> list[str]:
    if not isinstance(mish, bytes) or len(mish) < _MISH_HEADER or mish[:4] != b"mish":
        return []
    (count,) = struct.unpack_from(">I", mish, _MISH_HEADER - 4)
    count = min(count, _MAX_CHUNKS, (len(mish) - _MISH_HEADER) // _CHUNK.size)
    kinds: Counter[str] = Counter()
    for index in range(count):
        kind = _CHUNK.unpack_from(mish, _MISH_HEADER + index * _CHUNK.size)[0]
        if kind not in _NOT_DATA:
            kinds[CHUNK_FORMATS.get(kind, f"type {kind:#x}")] += 1
    return [f"{n} {kind} chunk{'s' if n > 1 else ''}" for kind, n in sorted(kinds.items())]


def _not_inspected(path: str, detail: str) -> PreflightIssue:
    return PreflightIssue(Severity.WARNING, path, msg.DMG_NOT_INSPECTED, None, detail)
