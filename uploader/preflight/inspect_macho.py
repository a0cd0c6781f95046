"""The per-slice rules: what the notary service would say about one Mach-O file.

One call reads, in increasing offset order, each slice's header and load commands and then its
signature data. Nothing else of the file is read, so a 2 GB executable costs a few kilobytes
(plus the decompression of everything before its signature when it sits in a deflated member).
Rules and their sources: shared/reference/preflight.md, section 6.
"""

from __future__ import annotations

import warnings
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.utils import CryptographyDeprecationWarning

from uploader.formats.superblob import SignatureFormatError
from uploader.preflight import messages as msg
from uploader.preflight.cms import CmsError, parse_signed_data
from uploader.preflight.codesign import HASH_SHA1, EmbeddedSignature, parse_embedded_signature
from uploader.preflight.developer_id import TrustAnchors, judge
from uploader.preflight.entitlements import (
    EntitlementsError,
    parse_der,
    parse_xml,
    requests_get_task_allow,
)
from uploader.preflight.macho import (
    CODE_FILETYPES,
    MH_EXECUTE,
    PLATFORM_MACCATALYST,
    PLATFORM_MACOS,
    MachOFormatError,
    Slice,
    format_version,
    read_slice,
    slice_ranges,
)
from uploader.preflight.messages import Severity
from uploader.preflight.report import PreflightIssue
from uploader.preflight.source import BackwardReadError, ByteSource

SDK_10_9 = 0x000A0900
# What reading a hostile CMS blob or certificate can raise (cryptography parses lazily).
CERTIFICATE_ERRORS = (
    CmsError,
    ValueError,
    TypeError,
    UnsupportedAlgorithm,
    x509.InvalidVersion,
    CryptographyDeprecationWarning,
)
_MAX_SIGNATURE_BYTES = 64 << 20


def inspect_macho(
    path: str, source: ByteSource, anchors: TrustAnchors
) -> tuple[list[PreflightIssue], int]:
    """Issues for every code slice of the Mach-O in ``source``, and how many slices were checked."""
    issues: list[PreflightIssue] = []
    checked = 0
    try:
        for offset, size in slice_ranges(source):
            slice_ = read_slice(source, offset, size)
            if slice_.filetype not in CODE_FILETYPES:
                continue
            checked += 1
            issues.extend(_check_slice(path, source, slice_, anchors))
    except (MachOFormatError, BackwardReadError) as exc:
        issues.append(
            PreflightIssue(
                Severity.ERROR, path, msg.INVALID_SIGNATURE, detail=f"malformed Mach-O: {exc}"
            )
        )
    return issues, checked


def _check_slice(
    path: str, source: ByteSource, slice_: Slice, anchors: TrustAnchors
) -> list[PreflightIssue]:
    arch = slice_.architecture
    executable = slice_.filetype == MH_EXECUTE
    found: list[PreflightIssue] = []

    def add(message: str, detail: str | None = None, severity: Severity = Severity.ERROR) -> None:
        found.append(PreflightIssue(severity, path, message, arch, detail))

    def runtime_missing(detail: str) -> None:
        if executable:
            add(msg.NO_HARDENED_RUNTIME, detail)
        else:
            add(
                msg.NO_HARDENED_RUNTIME,
                f"{detail} (a library: the service usually accepts this)",
                Severity.WARNING,
            )

    if slice_.code_signature is None:
        add(msg.NOT_SIGNED, "no LC_CODE_SIGNATURE load command")
        add(msg.NO_SECURE_TIMESTAMP, "unsigned, so there is no timestamp")
        runtime_missing("unsigned")
    else:
        sig_offset, sig_size = slice_.code_signature
        data = source.read_at(slice_.offset + sig_offset, min(sig_size, _MAX_SIGNATURE_BYTES))
        try:
            signature = parse_embedded_signature(data)
        except SignatureFormatError as exc:
            add(msg.INVALID_SIGNATURE, str(exc))
        else:
            _check_signature(signature, anchors, add, runtime_missing)
    _check_sdk(slice_, add)
    return found


def _check_signature(
    signature: EmbeddedSignature, anchors: TrustAnchors, add: _Add, runtime_missing: _Detail
) -> None:
    directories = signature.code_directories
    primary = directories[0]
    if any(cd.is_linker_signed for cd in directories):
        add(msg.NOT_DEVELOPER_ID, "linker-signed (ad-hoc signature added by ld), no certificate")
        add(msg.NO_SECURE_TIMESTAMP, "ad-hoc signatures carry no timestamp")
    elif any(cd.is_adhoc for cd in directories) or signature.cms is None:
        add(msg.NOT_DEVELOPER_ID, "ad-hoc signature (codesign -s -), no certificate")
        add(msg.NO_SECURE_TIMESTAMP, "ad-hoc signatures carry no timestamp")
    else:
        try:
            with warnings.catch_warnings():
                # cryptography warns, then parses, certificates RFC 5280 forbids: that is a
                # signature the service rejects, and a warning would be noise on stderr.
                warnings.simplefilter("error", CryptographyDeprecationWarning)
                signed_data = parse_signed_data(signature.cms)
                verdict = judge(signed_data, anchors)
        except CERTIFICATE_ERRORS as exc:
            add(msg.INVALID_SIGNATURE, f"CMS signature unreadable: {type(exc).__name__}: {exc}")
        else:
            for reason in signed_data.unreadable_certificates:
                add(
                    msg.INVALID_SIGNATURE,
                    f"the signature embeds an unreadable certificate ({reason})",
                )
            if not verdict.is_developer_id:
                add(msg.NOT_DEVELOPER_ID, verdict.problem)
            if not verdict.has_timestamp:
                add(
                    msg.NO_SECURE_TIMESTAMP,
                    "the CMS signer has no RFC 3161 timestamp token (signingTime is not one)",
                )
            if (
                verdict.is_developer_id
                and verdict.team_id
                and primary.team_id
                and (verdict.team_id != primary.team_id)
            ):
                add(
                    msg.INVALID_SIGNATURE,
                    f"CodeDirectory team {primary.team_id} differs from the certificate's "
                    f"team {verdict.team_id}",
                    Severity.WARNING,
                )
    if not all(cd.has_runtime for cd in directories):
        runtime_missing("CodeDirectory flags lack the runtime bit (0x10000)")
    _check_entitlements(signature, add)
    if all(cd.hash_type == HASH_SHA1 for cd in directories):
        add(msg.WEAK_ALGORITHM, "only a SHA-1 CodeDirectory", Severity.WARNING)


def _check_entitlements(signature: EmbeddedSignature, add: _Add) -> None:
    # Both forms are read even when one is unreadable, so get-task-allow is never hidden.
    for payload, parse, form in (
        (signature.entitlements_xml, parse_xml, "XML"),
        (signature.entitlements_der, parse_der, "DER"),
    ):
        if payload is None:
            continue
        try:
            entitlements = parse(payload)
        except EntitlementsError as exc:
            add(msg.INVALID_SIGNATURE, str(exc))
            continue
        if requests_get_task_allow(entitlements):
            add(msg.GET_TASK_ALLOW, f"get-task-allow is true in the {form} entitlements")
            return


def _check_sdk(slice_: Slice, add: _Add) -> None:
    if slice_.platform not in (None, PLATFORM_MACOS, PLATFORM_MACCATALYST):
        return  # another platform's binary; the macOS SDK rule does not apply
    if slice_.sdk is None:
        add(msg.OLD_SDK, "no LC_BUILD_VERSION or LC_VERSION_MIN_MACOSX load command")
    elif slice_.platform == PLATFORM_MACOS and slice_.sdk < SDK_10_9:
        sdk = "0 (n/a)" if slice_.sdk == 0 else format_version(slice_.sdk)
        add(msg.OLD_SDK, f"built with SDK {sdk}")


class _Add(Protocol):  # the shapes of the callbacks above
    def __call__(
        self, message: str, detail: str | None = None, severity: Severity = Severity.ERROR
    ) -> None: ...


class _Detail(Protocol):
    def __call__(self, detail: str) -> None: ...
