"""Flat packages and disk images built byte by byte (xar and UDIF layouts) for stapling tests."""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

from service.emulator.sample_app import signature


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
