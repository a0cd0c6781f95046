"""Does the CMS signature sign *this* CodeDirectory?

The SignerInfo's signed attributes carry ``messageDigest`` (the digest of the primary
CodeDirectory, slot 0) and, from codesign, Apple's cdhash attributes: ``1.2.840.113635.100.9.1``
(a plist ``{"cdhashes": [...]}``, one truncated cdhash per CodeDirectory) and ``.9.2`` (a SET of
``SEQUENCE {hash algorithm, full digest}``) (rcodesign ``specification.rs``,
``embedded_signature_builder.rs``). The signer's signature over the DER of those attributes is
checked with the leaf certificate's key. A CodeDirectory edited after signing, even one whose
``messageDigest`` was patched to match, fails here.
"""

from __future__ import annotations

import hashlib
import plistlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.utils import CryptographyDeprecationWarning

from uploader.preflight import ber
from uploader.preflight.cms import CmsError, parse_signed_data
from uploader.preflight.codedirectory import CDHASH_BYTES, CodeDirectory
from uploader.preflight.seal import PLIST_ERRORS

OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
OID_CDHASHES_PLIST = "1.2.840.113635.100.9.1"
OID_CDHASHES_DER = "1.2.840.113635.100.9.2"
_DIGESTS: dict[str, tuple[str, type[hashes.HashAlgorithm]]] = {
    "1.3.14.3.2.26": ("sha1", hashes.SHA1),
    "2.16.840.1.101.3.4.2.1": ("sha256", hashes.SHA256),
    "2.16.840.1.101.3.4.2.2": ("sha384", hashes.SHA384),
    "2.16.840.1.101.3.4.2.3": ("sha512", hashes.SHA512),
}
_MAX_PLIST_BYTES = 1 << 20


@dataclass(frozen=True)
class SignedAttributes:
    digest_oid: str
    der: bytes | None  # the attributes re-tagged as SET OF, what the signature covers
    values: dict[str, list[bytes]]  # attribute OID -> the encoded values
    signature: bytes


def binding_problems(cms: bytes, directories: Sequence[CodeDirectory]) -> list[str]:
    """Why the CMS blob does not sign these CodeDirectories; [] when it does (or is unreadable:
    ``inspect_macho`` already reports a CMS that does not parse)."""
    try:
        with warnings.catch_warnings():
            # As in inspect_macho: a certificate RFC 5280 forbids is unreadable, not a warning.
            warnings.simplefilter("error", CryptographyDeprecationWarning)
            attributes = _signed_attributes(cms)
            signed = parse_signed_data(cms)
    except (ber.BerError, CmsError, IndexError, ValueError, CryptographyDeprecationWarning):
        return []
    if attributes is None:
        return ["the CMS signature has no signed attributes, so it signs no CodeDirectory"]
    problems = []
    names = _DIGESTS.get(attributes.digest_oid)
    primary = directories[0]
    digests = attributes.values.get(OID_MESSAGE_DIGEST, [])
    if names is None:
        problems.append(f"the CMS digest algorithm {attributes.digest_oid} is not one Apple uses")
    elif not digests or _octets(digests[0]) != hashlib.new(names[0], primary.raw).digest():
        problems.append(
            "the CMS messageDigest is not the digest of the CodeDirectory: the CodeDirectory "
            "was changed after it was signed"
        )
    problems.extend(_cdhash_problems(attributes, directories))
    if names is not None and attributes.der is not None:
        leaf = _signer_certificate(signed.certificates, signed.signers)
        if leaf is not None and not _signature_verifies(leaf, attributes, names[1]):
            problems.append("the CMS signature does not verify with the signing certificate's key")
    return problems


def _cdhash_problems(
    attributes: SignedAttributes, directories: Sequence[CodeDirectory]
) -> list[str]:
    actual = {cd.cdhash for cd in directories}
    for value in attributes.values.get(OID_CDHASHES_PLIST, [])[:1]:
        raw = _octets(value)
        try:
            listed = plistlib.loads(raw[:_MAX_PLIST_BYTES]).get("cdhashes", [])
        except PLIST_ERRORS:
            return ["the CMS cdhashes attribute is not a readable plist"]
        recorded = {bytes(h)[:CDHASH_BYTES] for h in listed if isinstance(h, bytes)}
        if recorded != actual:
            return ["the cdhashes the CMS signature lists are not those of the CodeDirectories"]
    by_name = {
        cd.hasher().name: hashlib.new(cd.hasher().name, cd.raw).digest() for cd in directories
    }
    for value in attributes.values.get(OID_CDHASHES_DER, []):
        data = value
        try:
            seq = ber.read_tlv(data, 0)
            oid_tlv, digest_tlv = ber.children(data, seq)[:2]
            oid = ber.decode_oid(ber.content(data, oid_tlv))
        except (ber.BerError, ValueError):
            return ["the CMS cdhash (DER) attribute does not parse"]
        name = _DIGESTS.get(oid, ("", hashes.SHA256))[0]
        if name in by_name and ber.content(data, digest_tlv) != by_name[name]:
            return [f"the CMS {name} cdhash attribute is not the CodeDirectory's digest"]
    return []


def _signed_attributes(cms: bytes) -> SignedAttributes | None:
    content_info = ber.read_tlv(cms, 0)
    signed_data = ber.children(cms, ber.children(cms, content_info)[1])[0]
    fields = ber.children(cms, signed_data)
    signer_sets = [t for t in fields[3:] if t.is_(ber.UNIVERSAL, ber.SET)]
    if not signer_sets:
        raise CmsError("SignedData has no signerInfos")
    signer = ber.children(cms, ber.children(cms, signer_sets[-1])[0])
    digest_oid = ber.decode_oid(ber.content(cms, ber.children(cms, signer[2])[0]))
    attrs = next((t for t in signer[3:] if t.is_(ber.CONTEXT, 0) and t.constructed), None)
    if attrs is None:
        return None
    values: dict[str, list[bytes]] = {}
    for attribute in ber.children(cms, attrs):
        attr_type, attr_values = ber.children(cms, attribute)[:2]
        oid = ber.decode_oid(ber.content(cms, attr_type))
        values[oid] = [cms[v.start : v.end] for v in ber.children(cms, attr_values)]
    definite = attrs.content_end == attrs.end
    der = (b"\x31" + cms[attrs.start + 1 : attrs.end]) if definite else None
    signature_tlv = signer[signer.index(attrs) + 2]
    return SignedAttributes(digest_oid, der, values, ber.content(cms, signature_tlv))


def _octets(encoded: bytes) -> bytes:
    tlv = ber.read_tlv(encoded, 0)
    return ber.content(encoded, tlv)


def _signer_certificate(
    certificates: Sequence[x509.Certificate], signers: Sequence[object]
) -> x509.Certificate | None:
    serial = getattr(signers[0], "serial_number", None) if signers else None
    return next((c for c in certificates if c.serial_number == serial), None)


def _signature_verifies(
    leaf: x509.Certificate, attributes: SignedAttributes, algorithm: type[hashes.HashAlgorithm]
) -> bool:
    assert attributes.der is not None
    try:
        key = leaf.public_key()
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(attributes.signature, attributes.der, padding.PKCS1v15(), algorithm())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(attributes.signature, attributes.der, ec.ECDSA(algorithm()))
        else:
            return True  # a key type Apple does not issue; the Developer ID check catches it
    except InvalidSignature:
        return False
    except (UnsupportedAlgorithm, ValueError):
        return True  # e.g. RSA-PSS parameters we do not model: not evidence of tampering
    return True
