"""Just enough of CMS SignedData (RFC 5652) to judge a code signature.

We need the certificates, which SignerInfo signed (issuer + serial, or subject key id) and
whether that SignerInfo carries an RFC 3161 timestamp token among its *unsigned* attributes.
``cryptography`` has no SignerInfo API, so the structure is walked with ``ber``; certificates
are handed to ``cryptography`` as DER.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509

from uploader.preflight import ber

OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
OID_TIMESTAMP_TOKEN = "1.2.840.113549.1.9.16.2.14"  # id-aa-timeStampToken


class CmsError(ValueError):
    """The CMS blob is not a SignedData we can read."""


@dataclass(frozen=True)
class SignerInfo:
    issuer_der: bytes | None  # DER of the issuer Name, when identified by issuer and serial
    serial_number: int | None
    subject_key_identifier: bytes | None
    unsigned_attribute_oids: frozenset[str]

    @property
    def has_timestamp_token(self) -> bool:
        return OID_TIMESTAMP_TOKEN in self.unsigned_attribute_oids


@dataclass(frozen=True)
class SignedData:
    certificates: tuple[x509.Certificate, ...]
    signers: tuple[SignerInfo, ...]
    unreadable_certificates: tuple[str, ...] = ()  # why each embedded one did not parse


def parse_signed_data(blob: bytes) -> SignedData:
    try:
        return _parse(blob)
    except ber.BerError as exc:
        raise CmsError(f"malformed CMS: {exc}") from exc


def _parse(data: bytes) -> SignedData:
    content_info = ber.read_tlv(data, 0)
    parts = ber.children(data, content_info)
    if len(parts) < 2 or ber.decode_oid(ber.content(data, parts[0])) != OID_SIGNED_DATA:
        raise CmsError("not a CMS SignedData")
    explicit = ber.children(data, parts[1])
    if not explicit:
        raise CmsError("SignedData is empty")
    fields = ber.children(data, explicit[0])
    certificates: list[x509.Certificate] = []
    unreadable: list[str] = []
    signer_set: ber.Tlv | None = None
    for tlv in fields[3:]:  # after version, digestAlgorithms, encapContentInfo
        if tlv.is_(ber.CONTEXT, 0):
            certificates.extend(_certificates(data, tlv, unreadable))
        elif tlv.is_(ber.UNIVERSAL, ber.SET):
            signer_set = tlv
    if signer_set is None:
        raise CmsError("SignedData has no signerInfos")
    signers = tuple(_signer_info(data, tlv) for tlv in ber.children(data, signer_set))
    return SignedData(tuple(certificates), signers, tuple(unreadable))


def _certificates(data: bytes, container: ber.Tlv, unreadable: list[str]) -> list[x509.Certificate]:
    out = []
    for tlv in ber.children(data, container):
        if not tlv.is_(ber.UNIVERSAL, ber.SEQUENCE):
            continue  # other certificate choices (attribute certs) do not matter here
        try:
            out.append(x509.load_der_x509_certificate(data[tlv.start : tlv.end]))
        except (ValueError, x509.InvalidVersion) as exc:
            unreadable.append(f"{type(exc).__name__}: {exc}")
    return out


def _signer_info(data: bytes, tlv: ber.Tlv) -> SignerInfo:
    fields = ber.children(data, tlv)
    if len(fields) < 5:
        raise CmsError("SignerInfo too short")
    sid = fields[1]
    issuer_der = serial = ski = None
    if sid.is_(ber.UNIVERSAL, ber.SEQUENCE):
        issuer_and_serial = ber.children(data, sid)
        if len(issuer_and_serial) < 2:
            raise CmsError("SignerInfo issuerAndSerialNumber too short")
        issuer, serial_tlv = issuer_and_serial[:2]
        issuer_der = data[issuer.start : issuer.end]
        serial = ber.decode_integer(ber.content(data, serial_tlv))
    elif sid.is_(ber.CONTEXT, 0):
        ski = ber.content(data, sid)
    unsigned: set[str] = set()
    for field in fields[4:]:
        if field.is_(ber.CONTEXT, 1) and field.constructed:
            for attribute in ber.children(data, field):
                attr_parts = ber.children(data, attribute)
                if attr_parts:
                    unsigned.add(ber.decode_oid(ber.content(data, attr_parts[0])))
    return SignerInfo(issuer_der, serial, ski, frozenset(unsigned))
