"""Flat packages and disk images built byte by byte (xar and UDIF layouts) for stapling tests."""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

from service.emulator.sample_app import code_directory, make_sample_app, signature


def make_pkg(path: Path, payload: bytes = b"payload" * 100, style: str = "sha1") -> Path:
    """A flat package: xar header, compressed TOC with its checksum in the heap, some data."""
    size = 20 if style == "sha1" else 32
    toc = (f'<?xml version="1.0" encoding="UTF-8"?><xar><toc><checksum style="{style}">'
           f"<offset>0</offset><size>{size}</size></checksum></toc></xar>").encode()
    compressed = zlib.compress(toc)
    digest = hashlib.new(style, compressed).digest()
    header = struct.pack(">4sHHQQI", b"xar!", 28, 1, len(compressed), len(toc),
                         1 if style == "sha1" else 3)
    path.write_bytes(header + compressed + digest + payload)
    return path


def make_dmg(path: Path, identifier: str = "com.example.image", *, signed: bool = True) -> Path:
    """Data fork, plist, embedded signature, koly trailer (signature offset/size at 0x128)."""
    data = b"\x00" * 4096 + b"<plist>blkx</plist>"
    blob = signature(identifier) if signed else b""
    koly = bytearray(512)
    koly[:4] = b"koly"
    struct.pack_into(">II", koly, 4, 4, 512)
    struct.pack_into(">QQ", koly, 0x128, len(data) if signed else 0, len(blob))
    path.write_bytes(data + blob + bytes(koly))
    return path


def dual_signature(identifier: str) -> bytes:
    """A SuperBlob like codesign's: SHA-1 CodeDirectory in slot 0, SHA-256 in slot 0x1000."""
    blobs = [(0, code_directory(identifier, hash_type=1)),
             (0x1000, code_directory(identifier, hash_type=2)),
             (0x10000, struct.pack(">II", 0xFADE0B01, 8))]
    header = 12 + 8 * len(blobs)
    index, body = b"", b""
    for slot, blob in blobs:
        index += struct.pack(">II", slot, header + len(body))
        body += blob
    return struct.pack(">III", 0xFADE0CC0, header + len(body), len(blobs)) + index + body


def thin_macho(blob: bytes, cputype: int = 0x0100000C, code_bytes: int = 4096) -> bytes:
    """A little-endian 64-bit executable whose LC_CODE_SIGNATURE points at ``blob``."""
    code_end = 32 + 16 + code_bytes
    header = struct.pack("<IiiIIIII", 0xFEEDFACF, cputype, 0, 2, 1, 16, 0, 0)
    return header + struct.pack("<IIII", 0x1D, 16, code_end, len(blob)) + b"\xcc" * code_bytes + blob


def make_universal_app(directory: Path, name: str = "Universal") -> Path:
    """A .app whose main executable is universal: the FIRST fat_arch entry (x86_64, dual
    CodeDirectories) names the slice at the HIGHER file offset; arm64 sits lower in the file."""
    app = make_sample_app(directory, name)
    arm64 = thin_macho(signature("com.example.arm64-slice"))
    x86_64 = thin_macho(dual_signature("com.example.x86-slice"), cputype=0x01000007)
    low, high = 0x1000, 0x1000 + ((len(arm64) + 0xFFF) & ~0xFFF)
    header = struct.pack(">II", 0xCAFEBABE, 2)
    header += struct.pack(">iiIII", 0x01000007, 3, high, len(x86_64), 12)  # entry 0: x86_64
    header += struct.pack(">iiIII", 0x0100000C, 0, low, len(arm64), 12)  # entry 1: arm64
    binary = header.ljust(low, b"\x00") + arm64.ljust(high - low, b"\x00") + x86_64
    (app / "Contents" / "MacOS" / name).write_bytes(binary)
    return app
