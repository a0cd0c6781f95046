"""Builds *correctly* signed code for the tests: real page hashes, special slots, sealed bundles
and signed flat packages, so tampering with any byte afterwards is what the tests detect.

Independent of preflight: layouts follow cs_blobs.h (CodeDirectory), Apple's CodeResources plist
(rules2/files2 as codesign writes them) and the xar table of contents (checksum, signature,
x-signature). The CMS and DER helpers come from ``preflight_builders``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import plistlib
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from preflight_builders import (
    CPU_ARM64,
    CS_RUNTIME,
    HASH_SHA1,
    HASH_SHA256,
    MH_EXECUTE,
    OID_SHA256,
    Identity,
    blob,
    cms_signed_data,
    der,
    der_oid,
    entitlements_xml,
    sdk,
    seq,
    set_of,
    super_blob,
)

PAGE_SHIFT = 12
REQUIREMENTS_BLOB = blob(0xFADE0C01, struct.pack(">I", 0))  # an empty requirement set
_HASH = {HASH_SHA1: hashlib.sha1, HASH_SHA256: hashlib.sha256}


@dataclass(frozen=True)
class Link:
    """A symlink in a bundle: codesign seals it by its target."""

    target: str


Entry = bytes | Link


@dataclass
class CodeSigning:
    identity: Identity | None = None
    chain: list[object] = field(default_factory=list)
    hash_types: tuple[int, ...] = (HASH_SHA256,)
    entitlements: dict[str, object] | None = None
    timestamp: bool = True
    cdhash_attributes: bool = False  # Apple's 1.2.840.113635.100.9.1 and .9.2, as codesign adds
    wrong_cdhashes: bool = False


@dataclass(frozen=True)
class SignedCode:
    data: bytes
    cdhash: bytes  # of the primary CodeDirectory of the first slice


def _code_directory(
    code: bytes, hash_type: int, special: dict[int, bytes], identifier: str, page_shift: int
) -> bytes:
    digest = _HASH[hash_type]
    size = digest().digest_size
    page = (1 << page_shift) if page_shift else len(code)  # 0: one page, as disk images use
    pages = [code[i : i + page] for i in range(0, len(code), page)]
    n_special = max(special, default=0)
    specials = b"".join(
        special[n] if n in special else b"\x00" * size for n in range(n_special, 0, -1)
    )
    ident = identifier.encode() + b"\x00"
    team = b"TEAM123456\x00"
    header_size = 88
    hash_offset = header_size + len(ident) + len(team) + len(specials)
    slots = b"".join(digest(p).digest() for p in pages)
    length = hash_offset + len(slots)
    header = struct.pack(
        ">IIIIIIIIIBBBBIIIIQQQQ",
        0xFADE0C02,
        length,
        0x20400,
        CS_RUNTIME,
        hash_offset,
        header_size,
        n_special,
        len(pages),
        len(code),
        size,
        hash_type,
        0,
        page_shift,
        0,
        0,
        header_size + len(ident),
        0,
        0,
        0,
        0,
        0,
    )
    return header + ident + team + specials + slots


def signature_for(
    code: bytes,
    signing: CodeSigning,
    *,
    info_plist: bytes | None = None,
    code_resources: bytes | None = None,
    identifier: str = "com.example.game",
    page_shift: int = PAGE_SHIFT,
) -> tuple[bytes, bytes]:
    """(SuperBlob, cdhash of the primary CodeDirectory) for ``code`` (bytes up to the signature)."""
    extra: list[tuple[int, bytes]] = [(2, REQUIREMENTS_BLOB)]
    if signing.entitlements is not None:
        extra.append((5, entitlements_xml(signing.entitlements)))
    directories = []
    for hash_type in signing.hash_types:
        digest = _HASH[hash_type]
        special = {slot: digest(data).digest() for slot, data in extra}
        if info_plist is not None:
            special[1] = digest(info_plist).digest()
        if code_resources is not None:
            special[3] = digest(code_resources).digest()
        directories.append(_code_directory(code, hash_type, special, identifier, page_shift))
    slots = [(0 if i == 0 else 0x1000 + i - 1, cd) for i, cd in enumerate(directories)]
    cms = b""
    if signing.identity is not None:
        cms = cms_signed_data(
            directories[0],
            signing.identity,
            signing.chain,  # type: ignore[arg-type]
            timestamp=signing.timestamp,
            extra_signed_attributes=_cdhash_attributes(directories, signing),
        )
    slots += [*extra, (0x10000, blob(0xFADE0B01, cms))]
    primary = directories[0]
    cdhash = _HASH[signing.hash_types[0]](primary).digest()[:20]
    return super_blob(sorted(slots)), cdhash


def _cdhash_attributes(directories: list[bytes], signing: CodeSigning) -> tuple[bytes, ...]:
    if not signing.cdhash_attributes:
        return ()
    hashes_ = [
        _HASH[h](cd).digest()[:20] for h, cd in zip(signing.hash_types, directories, strict=True)
    ]
    if signing.wrong_cdhashes:
        hashes_ = [*hashes_[:1], b"\x00" * 20]
    listed = plistlib.dumps({"cdhashes": hashes_})
    full = [
        seq(der_oid(OID_SHA256), der(0x04, hashlib.sha256(cd).digest()))
        for h, cd in zip(signing.hash_types, directories, strict=True)
        if h == HASH_SHA256
    ]
    return (
        seq(der_oid("1.2.840.113635.100.9.1"), set_of(der(0x04, listed))),
        seq(der_oid("1.2.840.113635.100.9.2"), set_of(*full)),
    )


def signed_thin(
    signing: CodeSigning,
    *,
    cputype: int = CPU_ARM64,
    filetype: int = MH_EXECUTE,
    code_bytes: int = 20_000,
    seed: bytes = b"code",
    info_plist: bytes | None = None,
    code_resources: bytes | None = None,
) -> SignedCode:
    """A thin Mach-O whose signature really covers its bytes (pages, special slots, CMS)."""
    commands = struct.pack("<IIIIII", 0x32, 24, 1, sdk(11, 0), sdk(14, 0), 0)
    sizeofcmds = len(commands) + 16
    code_end = 32 + sizeofcmds + code_bytes
    code_end += -code_end % 16
    body = bytearray()
    while len(body) < code_end:
        body += hashlib.sha256(seed + len(body).to_bytes(8, "big")).digest()

    def layout(reserved: int) -> bytes:
        header = struct.pack("<IiiIIII", 0xFEEDFACF, cputype, 0, filetype, 2, sizeofcmds, 0)
        head = header + b"\x00" * 4 + commands + struct.pack("<IIII", 0x1D, 16, code_end, reserved)
        return head + bytes(body[len(head) : code_end])

    kwargs = {"info_plist": info_plist, "code_resources": code_resources}
    provisional, _ = signature_for(layout(0), signing, **kwargs)  # type: ignore[arg-type]
    reserved = len(provisional) + 512
    code = layout(reserved)
    signature, cdhash = signature_for(code, signing, **kwargs)  # type: ignore[arg-type]
    return SignedCode(code + signature + b"\x00" * (reserved - len(signature)), cdhash)


def fat(slices: list[tuple[int, bytes]]) -> bytes:
    offset, table, layout = 8 + 20 * len(slices), b"", []
    for cputype, data in slices:
        offset += -offset % 4096
        table += struct.pack(">iiIII", cputype, 0, offset, len(data), 12)
        layout.append((offset, data))
        offset += len(data)
    out = bytearray(struct.pack(">II", 0xCAFEBABE, len(slices)) + table)
    for slice_offset, data in layout:
        out += b"\x00" * (slice_offset - len(out)) + data
    return bytes(out)


# --- bundles ------------------------------------------------------------------------------------

DEFAULT_RULES2: dict[str, object] = {
    "^.*": True,
    "^[^/]+$": {"nested": True, "weight": 10.0},
    "^(Frameworks|SharedFrameworks|PlugIns|Plug-ins|XPCServices|Helpers|MacOS|Library/"
    "(Automator|Spotlight|LoginItems))/": {"nested": True, "weight": 10.0},
    ".*\\.dSYM($|/)": {"weight": 11.0},
    "^(.*/)?\\.DS_Store$": {"omit": True, "weight": 2000.0},
    "^Info\\.plist$": {"omit": True, "weight": 20.0},
    "^PkgInfo$": {"omit": True, "weight": 20.0},
    "^Resources/": {"weight": 20.0},
    "^Resources/.*\\.lproj/": {"optional": True, "weight": 1000.0},
    "^Resources/.*\\.lproj/locversion.plist$": {"omit": True, "weight": 1100.0},
    "^embedded\\.provisionprofile$": {"weight": 20.0},
    "^version\\.plist$": {"weight": 20.0},
}
DEFAULT_RULES: dict[str, object] = {
    "^Resources/": True,
    "^Resources/.*\\.lproj/": {"optional": True, "weight": 1000.0},
    "^version.plist$": True,
}
_NESTED_DIRS = ("MacOS/", "Frameworks/", "PlugIns/", "Helpers/", "XPCServices/")
_OMITTED = ("Info.plist", "PkgInfo")
_BUNDLES = (".app", ".framework", ".bundle", ".plugin", ".xpc")


@dataclass
class Bundle:
    """Files of one or more bundles, keyed by path ("Game.app/Contents/MacOS/Game")."""

    files: dict[str, Entry] = field(default_factory=dict)
    cdhashes: dict[str, bytes] = field(default_factory=dict)  # bundle dir or Mach-O path

    def seal(
        self,
        bundle_dir: str,
        executable: str,
        signing: CodeSigning,
        *,
        framework: bool = False,
        optional: tuple[str, ...] = (),
    ) -> None:
        """Sign ``bundle_dir`` as codesign would: nested code first (already sealed), then
        CodeResources over every other file, then the main executable with slots 1 and 3."""
        root = f"{bundle_dir}/Versions/A" if framework else f"{bundle_dir}/Contents"
        exe_path = f"{root}/{executable}" if framework else f"{root}/MacOS/{executable}"
        info_path = f"{root}/Resources/Info.plist" if framework else f"{root}/Info.plist"
        self.files[info_path] = plistlib.dumps(
            {"CFBundleExecutable": executable, "CFBundleIdentifier": f"com.example.{executable}"}
        )
        nested = [  # bundles under Resources/ are sealed file by file (rules2 weight 20 > 10)
            d
            for d in self.cdhashes
            if d.startswith(f"{root}/")
            and d.endswith(_BUNDLES)
            and not d.startswith(f"{root}/Resources/")
        ]
        files2: dict[str, object] = {}
        for path, entry in sorted(self.files.items()):
            if not path.startswith(f"{root}/") or path == exe_path:
                continue
            rel = path[len(root) + 1 :]
            if rel.startswith("_CodeSignature/") or rel in _OMITTED:
                continue
            if any(path == d or path.startswith(f"{d}/") for d in nested):
                continue
            if isinstance(entry, Link):
                files2[rel] = {"symlink": entry.target}
            elif path in self.cdhashes and rel.startswith(_NESTED_DIRS):
                files2[rel] = {"cdhash": self.cdhashes[path], "requirement": 'cdhash H"00"'}
            else:
                record: dict[str, object] = {
                    "hash": hashlib.sha1(entry).digest(),
                    "hash2": hashlib.sha256(entry).digest(),
                }
                if rel in optional:
                    record["optional"] = True
                files2[rel] = record
        for directory in nested:
            files2[directory[len(root) + 1 :]] = {
                "cdhash": self.cdhashes[directory],
                "requirement": 'cdhash H"00"',
            }
        resources = plistlib.dumps(
            {"files": {}, "files2": files2, "rules": DEFAULT_RULES, "rules2": DEFAULT_RULES2}
        )
        self.files[f"{root}/_CodeSignature/CodeResources"] = resources
        signed = signed_thin(
            signing,
            seed=exe_path.encode(),
            info_plist=self.files[info_path],  # type: ignore[arg-type]
            code_resources=resources,
        )
        self.files[exe_path] = signed.data
        self.cdhashes[exe_path] = signed.cdhash
        self.cdhashes[bundle_dir] = signed.cdhash
        if framework:
            self.files[f"{bundle_dir}/Versions/Current"] = Link("A")
            self.files[f"{bundle_dir}/{executable}"] = Link(f"Versions/Current/{executable}")
            self.files[f"{bundle_dir}/Resources"] = Link("Versions/Current/Resources")

    def add_code(self, path: str, signing: CodeSigning) -> None:
        signed = signed_thin(signing, seed=path.encode())
        self.files[path] = signed.data
        self.cdhashes[path] = signed.cdhash

    def write_tree(self, parent: Path) -> None:
        for path, entry in self.files.items():
            target = parent / path
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(entry, Link):
                target.symlink_to(entry.target)
            else:
                target.write_bytes(entry)

    def zip_bytes(self, *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
        """As ``ditto -c -k --keepParent`` makes it: symlinks stored as symlinks."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
            for path, entry in self.files.items():
                info = zipfile.ZipInfo(path)
                info.compress_type = compression
                if isinstance(entry, Link):
                    info.external_attr = (stat.S_IFLNK | 0o755) << 16
                    archive.writestr(info, entry.target)
                else:
                    info.external_attr = (stat.S_IFREG | 0o644) << 16
                    archive.writestr(info, entry)
        return buffer.getvalue()


# --- signed flat packages -----------------------------------------------------------------------


def signed_xar(
    files: dict[str, bytes],
    signer: Identity,
    chain: list[object],
    *,
    timestamp: bool = True,
    tamper_toc: bool = False,
) -> bytes:
    """A flat package signed like productsign: a SHA-1 TOC checksum at heap offset 0, then the
    signature over it (``<signature>``) and a CMS (``<x-signature>``) with the certificates."""
    checksum_size = 20
    certs = [signer.cert, *chain]
    cert_xml = "".join(
        "<X509Certificate>"
        + base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()  # type: ignore[attr-defined]
        + "</X509Certificate>"
        for c in certs
    )
    # Signature sizes must be known before the TOC is written: ECDSA's vary, so reserve room.
    sig_room, cms_room = 128, 8192
    heap_files = bytearray()
    entries = ""
    base = checksum_size + sig_room + cms_room
    for index, (path, content) in enumerate(files.items(), start=10):
        folder, _, name = path.rpartition("/")
        entry = (
            f'<file id="{index}"><name>{name}</name><type>file</type><data>'
            f"<length>{len(content)}</length><offset>{base + len(heap_files)}</offset>"
            f'<size>{len(content)}</size><encoding style="application/octet-stream"/>'
            "</data></file>"
        )
        if folder:  # one level of folders: a component package
            entry = (
                f'<file id="{index + 1000}"><name>{folder}</name><type>directory</type>'
                f"{entry}</file>"
            )
        entries += entry
        heap_files += content
    toc = (
        '<?xml version="1.0" encoding="UTF-8"?><xar><toc>'
        f'<checksum style="sha1"><offset>0</offset><size>{checksum_size}</size></checksum>'
        f'<signature style="RSA"><offset>{checksum_size}</offset><size>{sig_room}</size>'
        f'<KeyInfo xmlns="http://www.w3.org/2000/09/xmldsig#"><X509Data>{cert_xml}</X509Data>'
        "</KeyInfo></signature>"
        f'<x-signature style="CMS"><offset>{checksum_size + sig_room}</offset>'
        f"<size>{cms_room}</size><KeyInfo><X509Data>{cert_xml}</X509Data></KeyInfo>"
        f"</x-signature>{entries}</toc></xar>"
    ).encode()
    compressed = zlib.compress(toc)
    checksum = hashlib.sha1(compressed).digest()
    assert isinstance(signer.key, ec.EllipticCurvePrivateKey)
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    signature = signer.key.sign(checksum, ec.ECDSA(Prehashed(hashes.SHA1())))
    cms = cms_signed_data(checksum, signer, chain, timestamp=timestamp)  # type: ignore[arg-type]
    assert len(signature) <= sig_room and len(cms) <= cms_room
    heap = (
        checksum
        + signature.ljust(sig_room, b"\x00")
        + cms.ljust(cms_room, b"\x00")
        + bytes(heap_files)
    )
    if tamper_toc:  # a file renamed in the TOC after signing; the checksum is still the old one
        compressed = zlib.compress(toc.replace(b"<name>", b"<name>renamed-", 1))
    header = struct.pack(">4sHHQQI", b"xar!", 28, 1, len(compressed), len(toc), 1)
    return header + compressed + heap


def random_bytes(n: int) -> bytes:
    return os.urandom(n)


# --- disk images --------------------------------------------------------------------------------


def mish(chunk_types: list[int]) -> bytes:
    """A blkx table: 204-byte header, then 40-byte chunk entries ending with the terminator."""
    chunks = [*chunk_types, 0xFFFFFFFF]
    header = b"mish" + struct.pack(">IQQQII", 1, 0, 8 * len(chunks), 0, 0, 0)
    header += b"\x00" * 24 + struct.pack(">II", 2, 32) + b"\x00" * 128
    header += struct.pack(">I", len(chunks))
    assert len(header) == 204
    body = b"".join(
        struct.pack(">IIQQQQ", kind, 0, 8 * i, 8, 512 * i, 512) for i, kind in enumerate(chunks)
    )
    return header + body


def udif(
    partitions: dict[str, list[int]],
    signing: CodeSigning | None,
    *,
    data: bytes = b"",
    page_shift: int = PAGE_SHIFT,
) -> bytes:
    """Data fork, XML plist with the blkx tables, optional embedded signature, koly trailer."""
    fork = data or os.urandom(8192)
    plist = plistlib.dumps(
        {
            "resource-fork": {
                "blkx": [
                    {"CFName": name, "Name": name, "ID": str(i), "Data": mish(kinds)}
                    for i, (name, kinds) in enumerate(partitions.items())
                ]
            }
        }
    )
    image = fork + plist
    signature = b""
    if signing is not None:
        signature, _ = signature_for(image, signing, identifier="Game", page_shift=page_shift)
    koly = bytearray(512)
    koly[0:4] = b"koly"
    struct.pack_into(">II", koly, 4, 4, 512)
    struct.pack_into(">QQ", koly, 24, 0, len(fork))
    struct.pack_into(">QQ", koly, 216, len(fork), len(plist))
    if signature:
        struct.pack_into(">QQ", koly, 296, len(image), len(signature))
    return image + signature + bytes(koly)
