"""File names that can break a bundle's seal when an archive is unpacked.

A bundle's ``_CodeResources`` records every file name. macOS file systems and unzip tools
disagree on Unicode normalisation (HFS+ stores NFD, APFS keeps what it is given, Linux-made zips
usually NFC), so a name whose NFC and NFD forms differ can come back as different bytes and the
seal no longer matches. Names stored in a zip without the UTF-8 flag are decoded as CP437 by
some tools and as UTF-8 by others, with the same effect.
"""

from __future__ import annotations

import unicodedata


def normalisation_problem(name: str, *, declared_utf8: bool = True) -> str | None:
    """Why ``name`` may not survive unpacking, or None when it is safe."""
    if name.isascii():
        return None
    if not declared_utf8:
        return "non-ASCII name stored in the zip without the UTF-8 flag"
    nfc, nfd = unicodedata.normalize("NFC", name), unicodedata.normalize("NFD", name)
    if nfc == nfd:
        return None
    form = "NFC" if name == nfc else "NFD" if name == nfd else "mixed"
    return f"name is {form}; its NFC and NFD forms differ"


def extraction_problem(name: str) -> str | None:
    """Why an archive member called ``name`` cannot be unpacked where it belongs, or None."""
    if not name.strip("/"):
        return "the name is empty"
    if "\0" in name:
        return "the name holds a NUL byte"
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "the name is an absolute path"
    if ".." in name.replace("\\", "/").split("/"):
        return "a '..' in the name reaches outside the archive"
    return None
