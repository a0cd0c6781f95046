"""Is a CMS code signature made with a Developer ID Application certificate?

Rules (shared/reference/preflight.md 2.6): the signing (leaf) certificate carries Apple's
"Developer ID Application" extension 1.2.840.113635.100.6.1.13, and it was issued by a
"Developer ID Certification Authority" (G1 or G2; the G2 CA carries extension .6.2.6). When the
intermediate is embedded (codesign always embeds it) the leaf's signature is verified against
it, and the intermediate's signature is verified against a trust anchor (Apple Root CA by
default, ``apple_roots``), so a home-made "Developer ID Certification Authority" fails. When the
intermediate is not embedded, the leaf's issuer name is all there is to go on.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID

from uploader.preflight.cms import SignedData, SignerInfo

TrustAnchors = tuple[x509.Certificate, ...]

DEVELOPER_ID_APPLICATION = "1.2.840.113635.100.6.1.13"
DEVELOPER_ID_CA = "1.2.840.113635.100.6.2.6"
DEVELOPER_ID_CA_NAME = "Developer ID Certification Authority"

# Names for the certificates people sign with by mistake, so the report can say which it was.
_OTHER_APPLE_LEAVES = {
    "1.2.840.113635.100.6.1.12": "Apple Development / Mac Developer",
    "1.2.840.113635.100.6.1.7": "Mac App Distribution / 3rd Party Mac Developer Application",
    "1.2.840.113635.100.6.1.9": "Mac App Store",
    "1.2.840.113635.100.6.1.14": "Developer ID Installer",
    "1.2.840.113635.100.6.1.2": "iPhone Developer",
    "1.2.840.113635.100.6.1.4": "iPhone Distribution",
}


@dataclass(frozen=True)
class SignerVerdict:
    is_developer_id: bool
    has_timestamp: bool
    leaf_name: str | None
    team_id: str | None
    problem: str | None  # why it is not Developer ID, for the report's detail line


def judge(signed_data: SignedData, anchors: TrustAnchors) -> SignerVerdict:
    if not signed_data.signers:
        return SignerVerdict(False, False, None, None, "the CMS signature has no signer")
    signer = signed_data.signers[0]
    leaf = _find_leaf(signed_data.certificates, signer)
    if leaf is None:
        return SignerVerdict(
            False,
            signer.has_timestamp_token,
            None,
            None,
            "the CMS signature does not contain its signing certificate",
        )
    name = _common_name(leaf.subject)
    team = _attribute(leaf.subject, NameOID.ORGANIZATIONAL_UNIT_NAME)
    problem = _developer_id_problem(leaf, signed_data.certificates, anchors)
    return SignerVerdict(problem is None, signer.has_timestamp_token, name, team, problem)


def _developer_id_problem(
    leaf: x509.Certificate, certificates: tuple[x509.Certificate, ...], anchors: TrustAnchors
) -> str | None:
    oids = _extension_oids(leaf)
    name = _common_name(leaf.subject) or leaf.subject.rfc4514_string()
    if DEVELOPER_ID_APPLICATION not in oids:
        kind = next((label for oid, label in _OTHER_APPLE_LEAVES.items() if oid in oids), None)
        if kind:
            return f"signed with a {kind} certificate ({name!r}), not Developer ID Application"
        if leaf.subject == leaf.issuer:
            return f"signed with a self-signed certificate ({name!r})"
        return f"the signing certificate {name!r} lacks the Developer ID Application extension"
    if leaf.subject == leaf.issuer:
        return f"the signing certificate {name!r} is self-signed"
    issuer = next((c for c in certificates if c.subject == leaf.issuer and c is not leaf), None)
    if issuer is None:
        if _common_name(leaf.issuer) == DEVELOPER_ID_CA_NAME:
            return None
        return f"{name!r} was not issued by the {DEVELOPER_ID_CA_NAME}"
    if DEVELOPER_ID_CA not in _extension_oids(issuer) and (
        _common_name(issuer.subject) != DEVELOPER_ID_CA_NAME
    ):
        return f"{name!r} was issued by {_common_name(issuer.subject)!r}, not a Developer ID CA"
    try:
        leaf.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return f"{name!r} does not verify against the embedded {DEVELOPER_ID_CA_NAME}"
    if not _anchored(issuer, anchors):
        return f"the {DEVELOPER_ID_CA_NAME} certificate in the signature is not issued by Apple"
    return None


def _anchored(intermediate: x509.Certificate, anchors: TrustAnchors) -> bool:
    for anchor in anchors:
        if intermediate == anchor:
            return True
        if intermediate.issuer != anchor.subject:
            continue
        try:
            intermediate.verify_directly_issued_by(anchor)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


def _find_leaf(
    certificates: tuple[x509.Certificate, ...], signer: SignerInfo
) -> x509.Certificate | None:
    for cert in certificates:
        if (
            signer.serial_number is not None
            and cert.serial_number == signer.serial_number
            and (signer.issuer_der is None or cert.issuer.public_bytes() == signer.issuer_der)
        ):
            return cert
        if signer.subject_key_identifier is not None:
            try:
                ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            except (x509.ExtensionNotFound, ValueError):
                continue
            if ski.value.digest == signer.subject_key_identifier:
                return cert
    # Issuer encodings can differ byte-wise; fall back to the serial alone.
    for cert in certificates:
        if signer.serial_number is not None and cert.serial_number == signer.serial_number:
            return cert
    return None


def _extension_oids(cert: x509.Certificate) -> set[str]:
    try:
        return {ext.oid.dotted_string for ext in cert.extensions}
    except ValueError:  # a malformed known extension makes the whole list unreadable
        return set()


def _attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if values else None


def _common_name(name: x509.Name) -> str | None:
    return _attribute(name, NameOID.COMMON_NAME)
