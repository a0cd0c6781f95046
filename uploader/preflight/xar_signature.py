"""A flat package's own signature: TOC checksum, installer certificate, chain and timestamp.

productsign stores, at the start of the xar heap, a digest of the *compressed* table of contents
(``<checksum style="sha1|sha256">``), then a signature over that digest (``<signature>``, with
the certificates in ``KeyInfo/X509Data``) and a CMS over it (``<x-signature>``, which carries
the RFC 3161 timestamp) (indygreg/apple-platform-rs ``apple-xar/src/signing.rs``,
``table_of_contents.rs``; shared/reference/preflight.md 2.10). The leaf must be a
"Developer ID Installer" certificate (extension 1.2.840.113635.100.6.1.14 or extended key usage
1.2.840.113635.100.4.13) issued by a Developer ID CA that chains to Apple.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
import zlib
from collections.abc import Iterator
from typing import IO
from xml.etree import ElementTree

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import NameOID

from uploader.formats.xar import heap_range
from uploader.preflight import ber
from uploader.preflight import messages as msg
from uploader.preflight.cms import CmsError, parse_signed_data
from uploader.preflight.developer_id import TrustAnchors
from uploader.preflight.messages import Severity
from uploader.preflight.report import PreflightIssue

DEVELOPER_ID_INSTALLER = "1.2.840.113635.100.6.1.14"
DEVELOPER_ID_INSTALLER_EKU = "1.2.840.113635.100.4.13"
_MAX_SIGNATURE_BYTES = 1 << 20
_MAX_CERTIFICATES = 16
_CHECKSUMS: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha512": hashes.SHA512,
}


class _Unreadable(ValueError):
    """The signature parts of the TOC cannot be read; reported as an invalid signature."""


Finding = tuple[str, str, Severity]  # (message, detail, severity)
_UNREADABLE = (
    _Unreadable,
    OSError,
    ValueError,
    zlib.error,
    struct.error,
    ElementTree.ParseError,
    UnsupportedAlgorithm,  # a certificate's key, parsed only when it is used
)


def check_pkg_signature(
    fileobj: IO[bytes],
    path: str,
    anchors: TrustAnchors,
    toc_compressed: bytes,
    top: ElementTree.Element,
    heap: int,
) -> list[PreflightIssue]:
    """Findings about the package's own signature (none when it is a valid Developer ID one).
    ``top`` is the parsed ``<xar>`` root of ``toc_compressed``, read by ``pkg.py`` within the
    run's limits; ``heap`` is where the xar heap starts."""
    found: list[PreflightIssue] = []
    try:
        for message, detail, severity in _findings(fileobj, anchors, toc_compressed, top, heap):
            found.append(PreflightIssue(severity, path, message, None, detail))
    except _UNREADABLE as exc:
        found.append(PreflightIssue(Severity.ERROR, path, msg.INVALID_SIGNATURE, None,
                                    f"the package signature cannot be read: {exc}"))
    return found


def _findings(fileobj: IO[bytes], anchors: TrustAnchors, toc_compressed: bytes,
              top: ElementTree.Element, heap: int) -> Iterator[Finding]:
    toc = top.find("toc")
    if toc is None:
        raise _Unreadable("no <toc> in the table of contents")
    signature, x_signature = toc.find("signature"), toc.find("x-signature")
    if signature is None and x_signature is None:
        yield (msg.NOT_SIGNED, "the installer package has no signature: sign it with productsign "
               "--sign 'Developer ID Installer: …' --timestamp", Severity.WARNING)
        return
    checksum_node = toc.find("checksum")
    if checksum_node is None:
        raise _Unreadable("the signed table of contents has no <checksum>")
    style = (checksum_node.get("style") or "sha1").lower()
    algorithm = _CHECKSUMS.get(style)
    if algorithm is None:
        raise _Unreadable(f"the table of contents checksum uses {style!r}")
    stored = _heap_bytes(fileobj, heap, checksum_node, 64)
    if stored != hashlib.new(style, toc_compressed).digest():
        yield (msg.INVALID_SIGNATURE, f"the table of contents no longer matches its {style} "
               "checksum: the package was changed after it was signed", Severity.ERROR)
        return
    certificates = _certificates(signature if signature is not None else x_signature)
    if not certificates:
        raise _Unreadable("the package signature carries no certificate")
    leaf = certificates[0]
    if signature is not None:
        signed = _heap_bytes(fileobj, heap, signature, _MAX_SIGNATURE_BYTES)
        if not _verifies(leaf, signed, stored, algorithm()):
            yield (msg.INVALID_SIGNATURE, f"the package signature does not verify over the "
                   f"{style} checksum of its table of contents with the certificate's key",
                   Severity.ERROR)
    if problem := _installer_problem(leaf, certificates, anchors):
        yield msg.NOT_DEVELOPER_ID, problem, Severity.ERROR
    if not _has_timestamp(fileobj, heap, x_signature):
        yield (msg.NO_SECURE_TIMESTAMP, "the package's CMS signature (x-signature) has no RFC "
               "3161 timestamp: productsign --timestamp", Severity.ERROR)


def _heap_bytes(fileobj: IO[bytes], heap: int, node: ElementTree.Element, limit: int) -> bytes:
    offset, size = heap_range(node)
    if offset < 0 or not 0 < size <= limit:
        raise _Unreadable(f"<{node.tag}> has no usable offset and size")
    fileobj.seek(heap + offset)
    data = fileobj.read(size)
    if len(data) < size:
        raise _Unreadable(f"<{node.tag}> points past the end of the package")
    return data


def _certificates(node: ElementTree.Element | None) -> list[x509.Certificate]:
    if node is None:
        return []
    certificates = []
    for element in node.iter():
        if element.tag.rsplit("}", 1)[-1] != "X509Certificate" or not element.text:
            continue
        try:
            der = base64.b64decode("".join(element.text.split()), validate=True)
            certificates.append(x509.load_der_x509_certificate(der))
        except (binascii.Error, ValueError):
            continue
        if len(certificates) >= _MAX_CERTIFICATES:
            break
    return certificates


def _verifies(
    leaf: x509.Certificate, signature: bytes, digest: bytes, algorithm: hashes.HashAlgorithm
) -> bool:
    try:
        key = leaf.public_key()
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, digest, padding.PKCS1v15(), Prehashed(algorithm))
        elif isinstance(key, ec.EllipticCurvePublicKey):
            end = ber.read_tlv(signature, 0).end  # the heap slot may be padded after the DER
            key.verify(signature[:end], digest, ec.ECDSA(Prehashed(algorithm)))
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, ber.BerError):
        return False
    return True


def _installer_problem(
    leaf: x509.Certificate, certificates: list[x509.Certificate], anchors: TrustAnchors
) -> str | None:
    name = _common_name(leaf)
    if not _is_installer(leaf):
        return f"signed with {name!r}, not a Developer ID Installer certificate"
    issuer = next((c for c in certificates[1:] if c.subject == leaf.issuer), None)
    if issuer is None or not _issued_by(leaf, issuer):
        return f"{name!r} does not verify against a Developer ID Certification Authority"
    if not any(issuer == anchor or _issued_by(issuer, anchor) for anchor in anchors):
        return f"{_common_name(issuer)!r}, which issued {name!r}, is not issued by Apple"
    return None


def _is_installer(leaf: x509.Certificate) -> bool:
    try:
        oids = {ext.oid.dotted_string for ext in leaf.extensions}
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        eku = {usage.dotted_string for usage in usages}
    except x509.ExtensionNotFound:
        eku = set()
    except ValueError:
        return False
    return DEVELOPER_ID_INSTALLER in oids or DEVELOPER_ID_INSTALLER_EKU in eku


def _issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    if certificate.issuer != issuer.subject:
        return False
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _has_timestamp(fileobj: IO[bytes], heap: int, x_signature: ElementTree.Element | None) -> bool:
    if x_signature is None:
        return False
    blob = _heap_bytes(fileobj, heap, x_signature, _MAX_SIGNATURE_BYTES)
    try:
        signers = parse_signed_data(blob).signers
    except (CmsError, IndexError):
        return False
    return bool(signers) and signers[0].has_timestamp_token


def _common_name(certificate: x509.Certificate) -> str:
    values = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else certificate.subject.rfc4514_string()
