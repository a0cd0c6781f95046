"""Builds Mach-O files, code signatures, CMS blobs and containers byte by byte for the tests.

Nothing here comes from preflight itself: the layouts follow Apple's headers (loader.h, fat.h,
cs_blobs.h), RFC 5652 for CMS and the xar/cpio formats, so the tests check preflight against an
independent writer. Certificates are generated per test session (EC P-256: fast).
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import lzma
import plistlib
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

CPU_X86_64 = 0x01000007
CPU_ARM64 = 0x0100000C
CPU_I386 = 7
MH_EXECUTE, MH_DYLIB, MH_BUNDLE, MH_DSYM = 2, 6, 8, 0xA

CS_ADHOC, CS_RUNTIME, CS_LINKER_SIGNED = 0x2, 0x10000, 0x20000
HASH_SHA1, HASH_SHA256 = 1, 2

OID_DEV_ID_APPLICATION = "1.2.840.113635.100.6.1.13"
OID_APPLE_DEVELOPMENT = "1.2.840.113635.100.6.1.12"
OID_DEV_ID_CA = "1.2.840.113635.100.6.2.6"


def sdk(major: int, minor: int, patch: int = 0) -> int:
    return (major << 16) | (minor << 8) | patch


# --- DER --------------------------------------------------------------------------------------


def der(tag: int, content: bytes, *, indefinite: bool = False) -> bytes:
    if indefinite:
        return bytes([tag]) + b"\x80" + content + b"\x00\x00"
    n = len(content)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + content


def der_oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    body = bytearray([arcs[0] * 40 + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return der(0x06, bytes(body))


def der_int(value: int) -> bytes:
    return der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def seq(*parts: bytes, indefinite: bool = False) -> bytes:
    return der(0x30, b"".join(parts), indefinite=indefinite)


def set_of(*parts: bytes) -> bytes:
    return der(0x31, b"".join(sorted(parts)))


# --- certificates -----------------------------------------------------------------------------


@dataclass
class Identity:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _name(cn: str, ou: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if ou:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Preflight Test"))
    return x509.Name(attrs)


def make_identity(
    cn: str,
    *,
    issuer: Identity | None = None,
    ou: str | None = None,
    extension_oids: tuple[str, ...] = (),
    ca: bool = False,
) -> Identity:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(cn, ou)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    for oid in extension_oids:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), b"\x05\x00"), critical=False
        )
    signer_key = issuer.key if issuer else key
    return Identity(builder.sign(signer_key, hashes.SHA256()), key)


@dataclass
class Pki:
    """A root, a "Developer ID Certification Authority" under it, and leaves."""

    root: Identity
    developer_id_ca: Identity
    developer_id_leaf: Identity
    apple_development_leaf: Identity
    self_signed_developer_id: Identity
    rogue_ca: Identity = field(repr=False)
    rogue_leaf: Identity = field(repr=False)


def developer_id_chain(root: Identity, leaf_name: str) -> tuple[Identity, Identity]:
    """A Developer ID CA under ``root``, and the Developer ID Application leaf it issued."""
    ca = make_identity("Developer ID Certification Authority", issuer=root, ou="G2",
                       extension_oids=(OID_DEV_ID_CA,), ca=True)
    leaf = make_identity(leaf_name, issuer=ca, ou="TEAM123456",
                         extension_oids=(OID_DEV_ID_APPLICATION,))
    return ca, leaf


def make_pki() -> Pki:
    root = make_identity("Test Root CA", ca=True)
    ca, leaf = developer_id_chain(root, "Developer ID Application: Test Studio (TEAM123456)")
    dev = make_identity(
        "Apple Development: Jane Doe (TEAM123456)",
        issuer=ca,
        ou="TEAM123456",
        extension_oids=(OID_APPLE_DEVELOPMENT,),
    )
    self_signed = make_identity(
        "Developer ID Application: Nobody (SELF000000)",
        ou="SELF000000",
        extension_oids=(OID_DEV_ID_APPLICATION,),
    )
    # Same names as the real chain, but a CA nobody trusts: only the trust anchor tells them apart.
    rogue_ca, rogue_leaf = developer_id_chain(make_identity("Rogue Root", ca=True),
                                              "Developer ID Application: Rogue (TEAM123456)")
    return Pki(root, ca, leaf, dev, self_signed, rogue_ca, rogue_leaf)


# --- CMS ----------------------------------------------------------------------------------------

OID_DATA = "1.2.840.113549.1.7.1"
OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
OID_TIMESTAMP_TOKEN = "1.2.840.113549.1.9.16.2.14"
OID_SHA256 = "2.16.840.1.101.3.4.2.1"
OID_ECDSA_SHA256 = "1.2.840.10045.4.3.2"


def cms_signed_data(
    code_directory: bytes,
    signer: Identity,
    chain: list[x509.Certificate],
    *,
    timestamp: bool = True,
    indefinite: bool = True,
    extra_signed_attributes: tuple[bytes, ...] = (),
) -> bytes:
    """Detached CMS SignedData over ``code_directory``, built by hand like Apple's encoder
    (indefinite-length BER outside, DER certificates inside), optionally with an RFC 3161
    timestamp token as an unsigned attribute. The token is a structurally plausible stand-in:
    preflight only checks that the attribute is there."""
    sha256_alg = seq(der_oid(OID_SHA256))
    signed_attrs = [
        seq(der_oid(OID_CONTENT_TYPE), set_of(der_oid(OID_DATA))),
        seq(
            der_oid(OID_MESSAGE_DIGEST),
            set_of(der(0x04, hashlib.sha256(code_directory).digest())),
        ),
    ]
    attrs_set = set_of(*signed_attrs, *extra_signed_attributes)
    signature = signer.key.sign(attrs_set, ec.ECDSA(hashes.SHA256()))
    issuer_and_serial = seq(signer.cert.issuer.public_bytes(), der_int(signer.cert.serial_number))
    fields = [
        der_int(1),
        issuer_and_serial,
        sha256_alg,
        b"\xa0" + attrs_set[1:],  # [0] IMPLICIT SET OF Attribute
        seq(der_oid(OID_ECDSA_SHA256)),
        der(0x04, signature),
    ]
    if timestamp:
        token = seq(der_oid(OID_SIGNED_DATA), der(0xA0, seq(der_int(3), set_of())))
        fields.append(der(0xA1, seq(der_oid(OID_TIMESTAMP_TOKEN), set_of(token))))
    signer_info = seq(*fields)
    certs = b"".join(c.public_bytes(serialization.Encoding.DER) for c in [signer.cert, *chain])
    signed_data = seq(
        der_int(1),
        set_of(sha256_alg),
        seq(der_oid(OID_DATA), indefinite=indefinite),
        der(0xA0, certs, indefinite=indefinite),
        der(0x31, signer_info, indefinite=indefinite),
        indefinite=indefinite,
    )
    return seq(
        der_oid(OID_SIGNED_DATA),
        der(0xA0, signed_data, indefinite=indefinite),
        indefinite=indefinite,
    )


def cms_with_cryptography(
    code_directory: bytes, signer: Identity, chain: list[x509.Certificate]
) -> bytes:
    """The same without a timestamp, made by cryptography's own PKCS#7 builder (DER)."""
    builder = pkcs7.PKCS7SignatureBuilder().set_data(code_directory)
    builder = builder.add_signer(signer.cert, signer.key, hashes.SHA256())
    for cert in chain:
        builder = builder.add_certificate(cert)
    return builder.sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature])


# --- code signature -----------------------------------------------------------------------------


def code_directory(
    *,
    flags: int = CS_RUNTIME,
    hash_type: int = HASH_SHA256,
    identifier: str = "com.example.game",
    team_id: str | None = "TEAM123456",
) -> bytes:
    version = 0x20400
    header_size = 88  # through execSegFlags (version 0x20400)
    ident = identifier.encode() + b"\x00"
    team = (team_id.encode() + b"\x00") if team_id else b""
    ident_offset = header_size
    team_offset = header_size + len(ident) if team_id else 0
    hash_offset = header_size + len(ident) + len(team)
    length = hash_offset
    body = struct.pack(
        ">IIIIIIIIIBBBBIIIIQQQQ",
        0xFADE0C02,
        length,
        version,
        flags,
        hash_offset,
        ident_offset,
        0,  # nSpecialSlots
        0,  # nCodeSlots
        0,  # codeLimit
        32 if hash_type == HASH_SHA256 else 20,
        hash_type,
        0,
        12,
        0,  # spare2
        0,  # scatterOffset
        team_offset,
        0,  # spare3
        0,  # codeLimit64
        0,  # execSegBase
        0,  # execSegLimit
        0,  # execSegFlags
    )
    assert len(body) == header_size
    return body + ident + team


def blob(magic: int, payload: bytes) -> bytes:
    return struct.pack(">II", magic, 8 + len(payload)) + payload


def entitlements_xml(values: dict[str, object]) -> bytes:
    return blob(0xFADE7171, plistlib.dumps(values, fmt=plistlib.FMT_XML))


def entitlements_der(values: dict[str, bool | int | str]) -> bytes:
    """Apple's DER entitlements: [APPLICATION 16] { INTEGER 1, [CONTEXT 16] { SEQ{key, v} } }."""
    entries = []
    for key in sorted(values):
        value = values[key]
        if isinstance(value, bool):
            encoded = der(0x01, b"\xff" if value else b"\x00")
        elif isinstance(value, int):
            encoded = der_int(value)
        else:
            encoded = der(0x0C, value.encode())
        entries.append(seq(der(0x0C, key.encode()), encoded))
    return blob(0xFADE7172, der(0x70, der_int(1) + der(0xB0, b"".join(entries))))


def super_blob(slots: list[tuple[int, bytes]]) -> bytes:
    header_size = 12 + 8 * len(slots)
    index, data, offset = b"", b"", header_size
    for slot, content in slots:
        index += struct.pack(">II", slot, offset)
        data += content
        offset += len(content)
    return struct.pack(">III", 0xFADE0CC0, header_size + len(data), len(slots)) + index + data


@dataclass
class Signing:
    """How to sign a slice. ``identity=None`` with no ``cms`` means ad-hoc (empty CMS)."""

    flags: int = CS_RUNTIME
    identity: Identity | None = None
    chain: list[x509.Certificate] = field(default_factory=list)
    timestamp: bool = True
    use_cryptography_builder: bool = False
    entitlements_xml: dict[str, object] | None = None
    entitlements_xml_raw: bytes | None = None  # slot 5 payload as is, for odd encodings
    entitlements_der: dict[str, bool | int | str] | None = None
    entitlements_der_raw: bytes | None = None  # slot 7 payload as is
    hash_types: tuple[int, ...] = (HASH_SHA256,)
    corrupt: bool = False

    def build(self) -> bytes:
        directories = [code_directory(flags=self.flags, hash_type=h) for h in self.hash_types]
        slots = [(0 if i == 0 else 0x1000 + i - 1, cd) for i, cd in enumerate(directories)]
        if self.entitlements_xml is not None:
            slots.append((5, entitlements_xml(self.entitlements_xml)))
        elif self.entitlements_xml_raw is not None:
            slots.append((5, blob(0xFADE7171, self.entitlements_xml_raw)))
        if self.entitlements_der is not None:
            slots.append((7, entitlements_der(self.entitlements_der)))
        elif self.entitlements_der_raw is not None:
            slots.append((7, blob(0xFADE7172, self.entitlements_der_raw)))
        cms = b""
        if self.identity is not None:
            if self.use_cryptography_builder:
                cms = cms_with_cryptography(directories[0], self.identity, self.chain)
            else:
                cms = cms_signed_data(
                    directories[0], self.identity, self.chain, timestamp=self.timestamp
                )
        slots.append((0x10000, blob(0xFADE0B01, cms)))
        data = super_blob(sorted(slots))
        if self.corrupt:
            data = b"\x00\x00\x00\x00" + data[4:]
        return data


# --- Mach-O -------------------------------------------------------------------------------------


@dataclass
class SliceSpec:
    cputype: int = CPU_ARM64
    filetype: int = MH_EXECUTE
    signing: Signing | None = None
    sdk: int | None = None  # default: 14.0 via LC_BUILD_VERSION
    version_min: bool = False  # use LC_VERSION_MIN_MACOSX instead of LC_BUILD_VERSION
    no_version_command: bool = False
    code_bytes: int = 8192


def thin_macho(spec: SliceSpec) -> bytes:
    is64 = bool(spec.cputype & 0x01000000)
    header_size = 32 if is64 else 28
    commands = []
    if not spec.no_version_command:
        version = sdk(14, 0) if spec.sdk is None else spec.sdk
        if spec.version_min:
            commands.append(struct.pack("<IIII", 0x24, 16, sdk(10, 6), version))
        else:
            commands.append(struct.pack("<IIIIII", 0x32, 24, 1, sdk(11, 0), version, 0))
    signature = spec.signing.build() if spec.signing else b""
    n_commands = len(commands) + (1 if spec.signing else 0)
    sizeofcmds = sum(len(c) for c in commands) + (16 if spec.signing else 0)
    code_end = header_size + sizeofcmds + spec.code_bytes
    code_end += -code_end % 16
    if spec.signing:
        commands.append(struct.pack("<IIII", 0x1D, 16, code_end, len(signature)))
    magic = 0xFEEDFACF if is64 else 0xFEEDFACE
    header = struct.pack(
        "<IiiIIII", magic, spec.cputype, 0, spec.filetype, n_commands, sizeofcmds, 0
    )
    if is64:
        header += b"\x00" * 4
    body = header + b"".join(commands)
    body += b"\xcc" * (code_end - len(body))
    return body + signature


def fat_macho(specs: list[SliceSpec], *, fat64: bool = False) -> bytes:
    slices = [thin_macho(s) for s in specs]
    align = 1 << 12
    entry = 32 if fat64 else 20
    offset = 8 + entry * len(slices)
    table, layout = b"", []
    for spec, data in zip(specs, slices, strict=True):
        offset += -offset % align
        if fat64:
            table += struct.pack(">iiQQII", spec.cputype, 0, offset, len(data), 12, 0)
        else:
            table += struct.pack(">iiIII", spec.cputype, 0, offset, len(data), 12)
        layout.append((offset, data))
        offset += len(data)
    out = bytearray(struct.pack(">II", 0xCAFEBABF if fat64 else 0xCAFEBABE, len(slices)) + table)
    for slice_offset, data in layout:
        out.extend(b"\x00" * (slice_offset - len(out)))
        out.extend(data)
    return bytes(out)


# --- containers ---------------------------------------------------------------------------------


def _cpio_members(files: dict[str, bytes]) -> Iterator[tuple[int, bytes, bytes, int]]:
    """(inode, NUL-terminated name, data, mode) of each file, then of the trailer."""
    for ino, (name, data) in enumerate([*files.items(), ("TRAILER!!!", b"")], start=1):
        yield ino, name.encode() + b"\x00", data, 0o100644 if name != "TRAILER!!!" else 0


def cpio_odc(files: dict[str, bytes]) -> bytes:
    out = bytearray()
    for ino, raw_name, data, mode in _cpio_members(files):
        # (value, octal digits): dev, ino, mode, uid, gid, nlink, rdev, mtime, namesize, filesize
        fields = [(0, 6), (ino, 6), (mode, 6), (0, 6), (0, 6), (1, 6), (0, 6), (0, 11),
                  (len(raw_name), 6), (len(data), 11)]
        out += b"070707" + b"".join(b"%0*o" % (width, value) for value, width in fields)
        out += raw_name + data
    return bytes(out)


def cpio_newc(files: dict[str, bytes]) -> bytes:
    out = bytearray()
    for ino, raw_name, data, mode in _cpio_members(files):
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(raw_name), 0]
        out += b"070701" + b"".join(b"%08X" % f for f in fields) + raw_name
        out += b"\x00" * (-len(out) % 4)
        out += data + b"\x00" * (-len(data) % 4)
    return bytes(out)


def pbzx(data: bytes, chunk: int = 4096) -> bytes:
    out = bytearray(b"pbzx" + struct.pack(">Q", 1 << 24))
    pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)] or [b""]
    for i, piece in enumerate(pieces):
        more = (1 << 24) if i < len(pieces) - 1 else 0
        # Alternate xz and stored chunks: Apple's writer stores chunks that do not shrink.
        body = lzma.compress(piece, format=lzma.FORMAT_XZ) if i % 2 == 0 else piece
        out += struct.pack(">QQ", more | chunk, len(body)) + body
    return bytes(out)


def xar(files: dict[str, bytes], *, encode_gzip: tuple[str, ...] = ()) -> bytes:
    """A flat package: ``files`` maps paths like "Game.pkg/Payload" to heap contents."""
    heap = bytearray()
    tree: dict[str, object] = {}
    for path, content in files.items():
        parts = path.split("/")
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})  # type: ignore[assignment]
        encoded = zlib.compress(content) if path in encode_gzip else content
        style = "application/x-gzip" if path in encode_gzip else "application/octet-stream"
        node[parts[-1]] = (len(heap), encoded, len(content), style)
        heap += encoded
    ids = iter(range(1, 10_000))

    def render(node: dict[str, object]) -> str:
        xml = ""
        for name, value in node.items():
            if isinstance(value, dict):
                xml += (
                    f'<file id="{next(ids)}"><name>{name}</name><type>directory</type>'
                    f"{render(value)}</file>"
                )
            else:
                offset, encoded, size, style = value  # type: ignore[misc]
                xml += (
                    f'<file id="{next(ids)}"><name>{name}</name><type>file</type><data>'
                    f"<length>{len(encoded)}</length><offset>{offset}</offset>"
                    f'<size>{size}</size><encoding style="{style}"/></data></file>'
                )
        return xml

    toc = f'<?xml version="1.0" encoding="UTF-8"?><xar><toc>{render(tree)}</toc></xar>'.encode()
    compressed = zlib.compress(toc)
    header = struct.pack(">4sHHQQI", b"xar!", 28, 1, len(compressed), len(toc), 0)
    return header + compressed + bytes(heap)


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data)


def dmg_like(payload: bytes = b"\x00" * 4096) -> bytes:
    """Enough of a UDIF image for detection: data followed by a 512-byte "koly" trailer."""
    trailer = b"koly" + b"\x00" * 508
    return payload + trailer


def zip_bytes(members: dict[str, bytes], *, compression: int) -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()
