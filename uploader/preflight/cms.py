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
    explicit = parts[1]
    signed_data = ber.children(data, explicit)[0]
    fields = ber.children(data, signed_data)
    certificates: list[x509.Certificate] = []
    signer_set: ber.Tlv | None = None
    for tlv in fields[3:]:  # after version, digestAlgorithms, encapContentInfo
        if tlv.is_(ber.CONTEXT, 0):
            certificates.extend(_certificates(data, tlv))
        elif tlv.is_(ber.UNIVERSAL, ber.SET):
            signer_set = tlv
    if signer_set is None:
        raise CmsError("SignedData has no signerInfos")
    signers = tuple(_signer_info(data, tlv) for tlv in ber.children(data, signer_set))
    return SignedData(tuple(certificates), signers)


def _certificates(data: bytes, container: ber.Tlv) -> list[x509.Certificate]:
    out = []
    for tlv in ber.children(data, container):
        if not tlv.is_(ber.UNIVERSAL, ber.SEQUENCE):
            continue  # other certificate choices (attribute certs) do not matter here
        try:
            out.append(x509.load_der_x509_certificate(data[tlv.start : tlv.end]))
        except ValueError:
            continue  # a certificate we cannot read cannot be the Developer ID leaf either
    return out


def _signer_info(data: bytes, tlv: ber.Tlv) -> SignerInfo:
    fields = ber.children(data, tlv)
    if len(fields) < 5:
        raise CmsError("SignerInfo too short")
    sid = fields[1]
    issuer_der = serial = ski = None
    if sid.is_(ber.UNIVERSAL, ber.SEQUENCE):
        issuer, serial_tlv = ber.children(data, sid)[:2]
        issuer_der = data[issuer.start : issuer.end]
        serial = ber.decode_integer(ber.content(data, serial_tlv))
    elif sid.is_(ber.CONTEXT, 0):
        ski = ber.content(data, sid)
    unsigned: set[str] = set()
    for field in fields[4:]:
        if field.is_(ber.CONTEXT, 1) and field.constructed:
            for attribute in ber.children(data, field):
                attr_type = ber.children(data, attribute)[0]
                unsigned.add(ber.decode_oid(ber.content(data, attr_type)))
    return SignerInfo(issuer_der, serial, ski, frozenset(unsigned))
