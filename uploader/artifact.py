"""What notaryd takes as input, decided once: ``Artifact.open(path, roots)`` at the edge.

The CLI handlers, ``POST /v1/jobs`` (and the daemon's check before a job runs) and the
pipeline's entry open the input once and pass the ``Artifact`` on; everything after asks its
``kind`` instead of looking at suffixes. ``KINDS`` is the one table of what notaryd takes, one
row a kind (docs/ARCHITECTURE.md shows it; a test keeps the two equal). Adding a kind is one row:

* ``suffix``: how the name says it (compared without regard to case: macOS volumes usually
  ignore it, ``Game.APP`` is a bundle); ``folder``: a bundle folder, else a regular file;
* ``zipped``: packaged for upload like ``ditto -c -k --keepParent`` (a bundle), else sent as it is;
* ``preflight``: the walker that checks it (``uploader.preflight.toplevel``);
* ``ticket_key``: which code signature identifies it, the ticket's record name, also the
  "never notarise twice" key (``uploader.staple.identity``); None: no ticket (a zip);
* ``read_ticket``/``write_ticket``: where a stapled ticket lives (``uploader.staple.tickets``);
  None: it cannot be stapled, and ``unstapleable`` says what to do instead.

The notary service takes a ``.zip``, a flat ``.pkg`` or a ``.dmg``; anything else is refused
before a byte is hashed, naming what is taken. Opening is ``uploader.source_file``'s: never
blocking (a FIFO is named, not waited on), regular files or real folders only, and under allowed
roots (the daemon's) no link followed, the descriptor's real path checked and a file with a
second name refused. Unconfined (the CLI), the user's own symlink is followed.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from uploader.errors import ConfigError
from uploader.preflight.toplevel import Walker, walk_dmg, walk_folder, walk_pkg, walk_zip
from uploader.source_file import (
    FileIdentity,
    SourceRejected,
    allowed_roots,
    check_bundle_folder,
    check_source,
    file_kind,
)
from uploader.staple.files import StapleInputError
from uploader.staple.identity import TicketKey, app_ticket_key, dmg_ticket_key, pkg_ticket_key
from uploader.staple.tickets import (
    read_app_ticket,
    read_dmg_ticket,
    read_pkg_ticket,
    write_app_ticket,
    write_dmg_ticket,
    write_pkg_ticket,
)

TicketWriter = Callable[[Path, bytes, threading.Event | None], None]


@dataclass(frozen=True)
class ArtifactKind:
    name: str
    suffix: str
    noun: str  # how a message names one
    folder: bool
    zipped: bool
    preflight: Walker
    ticket_key: Callable[[Path], TicketKey] | None = None
    read_ticket: Callable[[Path], bytes | None] | None = None
    write_ticket: TicketWriter | None = None
    unstapleable: str = ""  # why it cannot be stapled ({name}, {stem}), when it cannot

    @property
    def stapled(self) -> bool:
        return self.write_ticket is not None

    def why_not_stapled(self, path: Path) -> str:
        return self.unstapleable.format(name=path.name, stem=path.stem)


KINDS: tuple[ArtifactKind, ...] = (
    ArtifactKind("app", ".app", "a .app bundle", folder=True, zipped=True, preflight=walk_folder,
                 ticket_key=app_ticket_key, read_ticket=read_app_ticket,
                 write_ticket=write_app_ticket),
    ArtifactKind("zip", ".zip", "a .zip", folder=False, zipped=False, preflight=walk_zip,
                 unstapleable="{name}: a zip cannot be stapled; staple the .app it was made "
                              "from (notaryd staple {stem}.app), then zip it again"),
    ArtifactKind("pkg", ".pkg", "a flat .pkg", folder=False, zipped=False, preflight=walk_pkg,
                 ticket_key=pkg_ticket_key, read_ticket=read_pkg_ticket,
                 write_ticket=write_pkg_ticket),
    ArtifactKind("dmg", ".dmg", "a .dmg", folder=False, zipped=False, preflight=walk_dmg,
                 ticket_key=dmg_ticket_key, read_ticket=read_dmg_ticket,
                 write_ticket=write_dmg_ticket),
)
_BY_SUFFIX = {kind.suffix: kind for kind in KINDS}


def _listed(words: Sequence[str], last: str) -> str:
    return f"{', '.join(words[:-1])} {last} {words[-1]}" if len(words) > 1 else "".join(words)


_BUNDLES = _listed([k.noun for k in KINDS if k.folder], "or")
_ARCHIVES = [k.suffix for k in KINDS if not k.folder]
TAKEN = f"{_BUNDLES} (notaryd zips it), or {_listed(['a ' + _ARCHIVES[0], *_ARCHIVES[1:]], 'or')} archive"
STAPLEABLE = _listed([k.noun for k in KINDS if k.stapled], "or")


class UnsupportedInput(ConfigError):
    """The path is missing, or not something the notary service (or notaryd) takes."""

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


def kind_named(path: Path) -> ArtifactKind | None:
    """The kind the name says, without looking at the disk (None: not one notaryd takes)."""
    return _BY_SUFFIX.get(path.suffix.lower())


@dataclass(frozen=True)
class Artifact:
    """An input, opened and checked once: its kind, its (absolute) path, its identity as opened."""

    kind: ArtifactKind
    path: Path
    identity: FileIdentity

    @classmethod
    def open(cls, path: Path | str, roots: Sequence[Path] | None = None, *,
             expected: FileIdentity | None = None) -> Artifact:
        """What ``path`` is, or ``UnsupportedInput`` saying what to give instead (``SourceRejected``
        when the open refuses it: a link or a file outside ``roots``, a second name, a swap;
        ``SourceChangedError`` when it is not ``expected``). ``roots`` None: the roots in effect
        (``source_file.confine_to``), if any. Blocking."""
        path = Path(os.path.abspath(path))
        roots = allowed_roots() if roots is None else roots
        kind = kind_named(path)
        info = _stat(path, follow=roots is None)
        link = stat.S_ISLNK(info.st_mode)  # seen only when confined: the open names it
        if stat.S_ISDIR(info.st_mode) and (kind is None or not kind.folder):
            raise UnsupportedInput(f"{path} is a folder, not {_BUNDLES}; give {TAKEN}")
        if not (link or stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)):
            raise UnsupportedInput(f"{path}: not a regular file ({file_kind(info.st_mode)}); "
                                   f"give {TAKEN}")
        if kind is None or (kind.folder and not (link or stat.S_ISDIR(info.st_mode))):
            raise UnsupportedInput(
                f"{path.name}: the notary service does not take this format; it takes "
                f"{_listed(_ARCHIVES, 'and')} (and notaryd zips {_BUNDLES} itself): repackage "
                f"it, e.g. `ditto -c -k --keepParent YourApp.app YourApp.zip`")
        if kind.folder:
            identity = check_bundle_folder(path, roots)
        else:
            identity = check_source(path, roots, expected)
        return cls(kind, path, identity)

    def ticket_key(self) -> TicketKey:
        """The ticket record name of its code signature (blocking; reads headers only)."""
        if self.kind.ticket_key is None:
            raise StapleInputError(self.kind.why_not_stapled(self.path))
        return self.kind.ticket_key(self.path)

    def read_ticket(self) -> bytes | None:
        assert self.kind.read_ticket is not None, "for_stapling checked it"
        return self.kind.read_ticket(self.path)

    def write_ticket(self, ticket: bytes, stop: threading.Event | None = None) -> None:
        assert self.kind.write_ticket is not None, "for_stapling checked it"
        self.kind.write_ticket(self.path, ticket, stop)


def for_stapling(target: Path | Artifact) -> Artifact:
    """``target`` as an artifact that can be stapled, or ``StapleInputError`` saying why not."""
    if isinstance(target, Artifact):
        artifact = target
    else:
        named = kind_named(Path(target))
        if named is not None and not named.stapled:  # said before looking: a zip, even missing
            raise StapleInputError(named.why_not_stapled(Path(target)))
        try:
            artifact = Artifact.open(target)
        except UnsupportedInput as error:
            raise StapleInputError(f"{target}: no such file or folder" if error.missing else
                                   f"{target}: only {STAPLEABLE} can be stapled") from None
        except SourceRejected as error:
            raise StapleInputError(str(error), error.why) from None
    if not artifact.kind.stapled:
        artifact.ticket_key()  # raises, saying what to staple instead
    return artifact


def _stat(path: Path, *, follow: bool) -> os.stat_result:
    try:
        return os.stat(path, follow_symlinks=follow)
    except FileNotFoundError:
        raise UnsupportedInput(f"{path}: no such file or folder; give {TAKEN}",
                               missing=True) from None
    except ValueError:  # a NUL byte: no file has that name
        raise UnsupportedInput(f"{str(path)!r}: the path contains a NUL byte") from None
    except OSError as error:
        raise UnsupportedInput(f"{path}: cannot read it ({error.strerror or error}); check the "
                               "path and its permissions") from None


def ticket_key_for(target: Path | Artifact) -> TicketKey:
    """The ticket record name of an artifact that can be stapled (blocking)."""
    return for_stapling(target).ticket_key()
