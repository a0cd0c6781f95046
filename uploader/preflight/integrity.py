"""Does each signed slice of a Mach-O still match its signature? The check behind
"The signature of the binary is invalid." for a single file.

Per slice and per CodeDirectory: code pages (``pages.py``), requirements and entitlements
(special slots 2, 5, 7) and the CMS binding (``cms_binding.py``). Info.plist and the resource
seal (special slots 1 and 3) are files of the bundle, so they are returned as ``CodeFacts`` for
``bundles.py`` to compare once the whole bundle has been seen. Problems that stop a signature
from parsing at all are ``inspect_macho``'s to report; this module stays silent on them.
"""

from __future__ import annotations

from dataclasses import dataclass

from uploader.formats.superblob import SLOT_INFO_PLIST, SLOT_RESOURCES, SignatureFormatError
from uploader.preflight import messages as msg
from uploader.preflight.cms_binding import binding_problems
from uploader.preflight.codedirectory import read_signature_blobs
from uploader.preflight.codesign import parse_embedded_signature
from uploader.preflight.macho import CODE_FILETYPES, MachOFormatError, read_slice, slice_ranges
from uploader.preflight.messages import Severity
from uploader.preflight.pages import page_problems, special_slot_problems
from uploader.preflight.report import PreflightIssue
from uploader.preflight.source import BackwardReadError, ByteSource

_MAX_SIGNATURE_BYTES = 64 << 20


@dataclass(frozen=True)
class BundleSlot:
    """What one CodeDirectory recorded for a file of its bundle (special slot 1 or 3)."""

    architecture: str
    hash_type: int
    hash_name: str
    recorded: bytes


@dataclass(frozen=True)
class CodeFacts:
    cdhashes: frozenset[bytes]  # of every CodeDirectory of every slice
    info_plist: tuple[BundleSlot, ...]
    resources: tuple[BundleSlot, ...]
    valid: bool  # False when any slice's bytes no longer match its signature


def check_code_integrity(path: str, source: ByteSource) -> tuple[list[PreflightIssue], CodeFacts]:
    """Needs a random-access ``source``: each slice's signature is read before its pages."""
    issues: list[PreflightIssue] = []
    cdhashes: set[bytes] = set()
    info_plist: list[BundleSlot] = []
    resources: list[BundleSlot] = []
    try:
        for offset, size in slice_ranges(source):
            slice_ = read_slice(source, offset, size)
            if slice_.filetype not in CODE_FILETYPES or slice_.code_signature is None:
                continue
            sig_offset, sig_size = slice_.code_signature
            data = source.read_at(offset + sig_offset, min(sig_size, _MAX_SIGNATURE_BYTES))
            arch = slice_.architecture
            try:
                blobs = read_signature_blobs(data)
            except SignatureFormatError as exc:
                if _reported_elsewhere(data):
                    continue
                issues.append(
                    PreflightIssue(Severity.ERROR, path, msg.INVALID_SIGNATURE, arch, str(exc))
                )
                continue
            problems = page_problems(source, offset, size, blobs.directories)
            problems += special_slot_problems(blobs)
            if (cms := blobs.cms) is not None:
                problems += binding_problems(cms, blobs.directories)
            issues.extend(
                PreflightIssue(Severity.ERROR, path, msg.INVALID_SIGNATURE, arch, problem)
                for problem in problems
            )
            for cd in blobs.directories:
                cdhashes.add(cd.cdhash)
                for slot, into in ((SLOT_INFO_PLIST, info_plist), (SLOT_RESOURCES, resources)):
                    if (recorded := cd.special_slot(slot)) is not None:
                        into.append(BundleSlot(arch, cd.hash_type, cd.hash_name, recorded))
    except (MachOFormatError, BackwardReadError):
        pass  # inspect_macho reports a malformed Mach-O
    facts = CodeFacts(frozenset(cdhashes), tuple(info_plist), tuple(resources), not issues)
    return issues, facts


def _reported_elsewhere(data: bytes) -> bool:
    """Whether ``inspect_macho``'s own parser already rejects this signature (one finding is
    enough); the stricter checks here (slot counts, hash sizes) are reported by this module."""
    try:
        parse_embedded_signature(data)
    except SignatureFormatError:
        return True
    return False
