"""What notaryd takes as input, decided in one place: the CLI, the daemon's API, the pipeline
and the packaging step all ask ``input_kind`` instead of looking at suffixes themselves.

The notary service takes a ``.zip``, a flat ``.pkg`` or a ``.dmg``; notaryd also takes a
``.app`` bundle (a folder) and zips it like ``ditto -c -k --keepParent``. Suffixes are compared
without regard to case (macOS volumes usually ignore it: ``Game.APP`` is a bundle). Anything
else is refused before a byte is hashed, naming what is taken.
"""

from __future__ import annotations

import enum
import os
import stat
from pathlib import Path

from uploader.errors import ConfigError
from uploader.source_file import file_kind


class InputKind(enum.StrEnum):
    BUNDLE = "app"
    ZIP = "zip"
    PKG = "pkg"
    DMG = "dmg"

    @property
    def archive(self) -> bool:
        """Uploaded as it is (a bundle is zipped first)."""
        return self is not InputKind.BUNDLE


TAKEN = "a .app bundle (notaryd zips it), or a .zip, .pkg or .dmg archive"
_ARCHIVE_SUFFIXES = {f".{kind.value}": kind for kind in InputKind if kind.archive}


class UnsupportedInput(ConfigError):
    """The path is missing, or not something the notary service (or notaryd) takes."""


def kind_by_name(path: Path) -> InputKind | None:
    """The kind the name says, without looking at the disk (None: not one notaryd takes)."""
    suffix = path.suffix.lower()
    if suffix == ".app":
        return InputKind.BUNDLE
    return _ARCHIVE_SUFFIXES.get(suffix)


def input_kind(path: Path) -> InputKind:
    """What ``path`` is, or an ``UnsupportedInput`` saying what to give instead. Blocking."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise UnsupportedInput(f"{path}: no such file or folder; give {TAKEN}") from None
    except OSError as error:
        raise UnsupportedInput(f"{path}: cannot read it ({error.strerror or error}); check the "
                               "path and its permissions") from None
    named = kind_by_name(path)
    if stat.S_ISDIR(info.st_mode):
        if named is InputKind.BUNDLE:
            return named
        raise UnsupportedInput(f"{path} is a folder, not a .app bundle; give {TAKEN}")
    if not stat.S_ISREG(info.st_mode):
        raise UnsupportedInput(f"{path} is {file_kind(info.st_mode)}, not a regular file; give {TAKEN}")
    if named is None or named is InputKind.BUNDLE:
        raise UnsupportedInput(
            f"{path.name}: the notary service does not take this format; it takes .zip, .pkg "
            f"and .dmg (and notaryd zips a .app bundle itself): repackage it, e.g. "
            f"`ditto -c -k --keepParent YourApp.app YourApp.zip`")
    return named


def is_bundle(path: Path) -> bool:
    """A ``.app`` folder (any case of the suffix). Blocking."""
    return kind_by_name(path) is InputKind.BUNDLE and path.is_dir()
