"""A small signed-looking ``.app`` for the demo and tests: real bundle layout, real Mach-O.

The main executable is a thin arm64 Mach-O whose ``LC_CODE_SIGNATURE`` points at a SuperBlob
with a SHA-256 CodeDirectory (cs_blobs.h layout) and an empty CMS wrapper: enough for a cdhash,
so the emulator can issue a ticket and ``notaryd staple`` can staple it. It is not a Developer ID
signature (preflight says so): submit it with ``--skip-preflight``. ``big_file_bytes`` adds a
sparse ``Contents/Resources/assets.pak`` (no disk used, reads back as zeros).
"""

from __future__ import annotations

import os
import plistlib
import struct
from pathlib import Path

from uploader.formats.superblob import (
    CODE_DIRECTORY,
    SLOT_CODE_DIRECTORY,
    SLOT_SIGNATURE,
    build,
    wrapper,
)

_CS_RUNTIME = 0x10000


def code_directory(identifier: str, team_id: str = "NOTARYD01", hash_type: int = 2) -> bytes:
    """A CodeDirectory with no code slots; ``hash_type`` 1 (SHA-1) or 2 (SHA-256)."""
    header_size = 88  # version 0x20400 ends with execSegFlags
    ident = identifier.encode() + b"\x00"
    team = team_id.encode() + b"\x00"
    hash_offset = header_size + len(ident) + len(team)
    return struct.pack(
        ">IIIIIIIIIBBBBIIIIQQQQ", CODE_DIRECTORY, hash_offset, 0x20400, _CS_RUNTIME, hash_offset,
        header_size, 0, 0, 0, 32 if hash_type == 2 else 20, hash_type, 0, 12, 0, 0,
        header_size + len(ident), 0, 0, 0, 0, 0,
    ) + ident + team


def signature(identifier: str) -> bytes:
    """A SuperBlob with the CodeDirectory and an empty CMS wrapper (what ad-hoc signing leaves)."""
    return build({SLOT_CODE_DIRECTORY: code_directory(identifier), SLOT_SIGNATURE: wrapper(b"")})


def signed_macho(identifier: str, code_bytes: int = 4096) -> bytes:
    blob = signature(identifier)
    code_end = 32 + 16 + code_bytes
    header = struct.pack("<IiiIIIII", 0xFEEDFACF, 0x0100000C, 0, 2, 1, 16, 0, 0)
    command = struct.pack("<IIII", 0x1D, 16, code_end, len(blob))
    return header + command + b"\xcc" * code_bytes + blob


def make_sample_app(directory: Path, name: str = "NotarydDemo", *, big_file_bytes: int = 0,
                    identifier: str | None = None) -> Path:
    """Write ``<directory>/<name>.app`` (blocking) and return its path."""
    app = directory / f"{name}.app"
    macos = app / "Contents" / "MacOS"
    resources = app / "Contents" / "Resources"
    macos.mkdir(parents=True, exist_ok=True)
    resources.mkdir(parents=True, exist_ok=True)
    bundle_id = identifier or f"com.example.{name.lower()}"
    (app / "Contents" / "Info.plist").write_bytes(plistlib.dumps({
        "CFBundleExecutable": name, "CFBundleIdentifier": bundle_id,
        "CFBundlePackageType": "APPL", "CFBundleShortVersionString": "1.0"}))
    executable = macos / name
    executable.write_bytes(signed_macho(bundle_id))
    executable.chmod(0o755)
    (resources / "readme.txt").write_text(f"{name} sample bundle\n", encoding="utf-8")
    link = resources / "current"
    if not link.is_symlink():
        os.symlink("readme.txt", link)
    if big_file_bytes:
        with open(resources / "assets.pak", "wb") as f:
            f.truncate(big_file_bytes)
    return app
