"""Bundles as codesign --verify --deep --strict sees them, assembled while a container is walked.

Files arrive in whatever order the archive holds them, so each one is recorded (its SHA-1 and
SHA-256, a symlink's target, a Mach-O's cdhashes and validity) and every bundle is judged when
its container is finished: innermost seal first, so an outer seal can say whether the nested
code it recorded is still that code and still valid. A seal root is the folder holding
``_CodeSignature/CodeResources`` (``X.app/Contents``, ``X.framework/Versions/A``); its main
executable (``CFBundleExecutable``) must seal Info.plist (special slot 1) and CodeResources
(special slot 3), and CodeResources must match every other file (``seal.py``).

Only files inside a seal root are hashed: when the container lists its names first (zip,
folder) exactly those; in a streamed .pkg payload, files under a bundle-named folder.
"""

from __future__ import annotations

import hashlib
import plistlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from uploader.formats.superblob import SignatureFormatError
from uploader.preflight import messages as msg
from uploader.preflight.codedirectory import new_hasher
from uploader.preflight.integrity import BundleSlot, CodeFacts, check_code_integrity
from uploader.preflight.limits import Limits
from uploader.preflight.messages import Severity
from uploader.preflight.report import PreflightIssue
from uploader.preflight.seal import (
    PLIST_ERRORS,
    Present,
    Sealed,
    SealError,
    parse_code_resources,
    seal_problems,
)
from uploader.preflight.source import ByteSource

SEAL_FILE = "_CodeSignature/CodeResources"
BUNDLE_SUFFIXES = (
    ".app", ".framework", ".bundle", ".plugin", ".appex", ".xpc", ".kext", ".qlgenerator",
    ".mdimporter", ".saver", ".prefpane", ".component", ".driver", ".systemextension", ".dext",
)  # fmt: skip
# Where codesign's default rules2 seal code by cdhash ("nested": true), relative to the root.
_NESTED_CODE = re.compile(
    r"^([^/]+$|(Frameworks|SharedFrameworks|PlugIns|Plug-ins|XPCServices|Helpers|MacOS|"
    r"Library/(Automator|Spotlight|LoginItems))/)"
)
_CHUNK = 1 << 20
_MAX_LINK_TARGET = 4096
_PROBLEMS_PER_BUNDLE = 25


@dataclass
class _Record:
    sha256: bytes | None = None
    content: bytes | None = None
    symlink: str | None = None
    code: CodeFacts | None = None


class SealTracker:
    """Records what bundles are made of during one preflight run; not thread safe."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._records: dict[str, _Record] = {}
        self._listed: dict[str, frozenset[str]] = {}  # container -> its seal roots
        self._zips: set[str] = set()  # listed containers that are zip archives
        self._overflow = False
        self._unhashed: dict[str, str] = {}  # code too large to read again -> why
        self._keep_budget = limits.max_seal_content_total

    def expect(
        self, container: str, member_paths: Iterable[str], *, zip_archive: bool = False
    ) -> None:
        """Declare a container's full list of file paths before its files are visited. In a
        zip, "._name" AppleDouble members are a file's extended attributes (ditto turns them
        back into attributes when it unpacks), not files of the bundle."""
        suffix = "/" + SEAL_FILE
        self._listed[container] = frozenset(
            p[: -len(suffix)] for p in member_paths if p.endswith(suffix)
        )
        if zip_archive:
            self._zips.add(container)

    def _in_zip(self, folder: str) -> bool:
        """Whether the innermost container that listed its names, above ``folder``, is a zip."""
        while folder:
            if folder in self._listed:
                return folder in self._zips
            folder = folder.rpartition("/")[0]
        return False

    def wants(self, path: str) -> bool:
        """Whether the file's digests are needed: it lies inside a seal root."""
        return self._seal_roots(path) is not None

    def _seal_roots(self, path: str) -> list[str] | None:
        """The seal roots holding ``path``, innermost first ([] when only guessed from folder
        names; None when it is in no seal)."""
        folders = path.split("/")[:-1]
        ancestors = ["/".join(folders[:n]) for n in range(len(folders), 0, -1)]
        for index, ancestor in enumerate(ancestors):  # innermost container that listed its names
            if (roots := self._listed.get(ancestor)) is not None:
                return [a for a in ancestors[:index] if a in roots] or None
        guessed = any(folder.lower().endswith(BUNDLE_SUFFIXES) for folder in folders[1:])
        return [] if guessed else None

    def visit_code(self, path: str, source: ByteSource) -> list[PreflightIssue]:
        """Check a Mach-O's bytes against its signature and remember it for its bundle.
        Signed code where every enclosing seal keeps code by cdhash is not hashed whole."""
        issues, facts = check_code_integrity(path, source)
        roots = self._seal_roots(path)
        by_cdhash = bool(roots and facts.cdhashes) and all(
            _NESTED_CODE.match(path[len(root) + 1 :]) for root in roots or ()
        )
        record = self._digest(path, source) if roots is not None and not by_cdhash else _Record()
        record.code = facts
        self._store(path, record)
        return issues

    def visit_file(self, path: str, source: ByteSource) -> None:
        # A seal is always kept: even one whose files were not hashed must be reported.
        if self.wants(path) or path.endswith("/" + SEAL_FILE):
            self._store(path, self._digest(path, source))

    def visit_unhashed(self, path: str, why: str) -> None:
        """A file whose bytes could not be hashed (code too large to read twice from a
        stream): its bundle cannot be judged, which is said instead of a false alarm."""
        if self.wants(path):
            self._unhashed[path] = why

    def visit_link(self, path: str, target: str) -> None:
        self._store(path, _Record(symlink=target[:_MAX_LINK_TARGET]))

    def forget(self, container: str) -> None:
        """Drop what was recorded under a container that could not be read to its end: a
        partial bundle judged later would only give false alarms (its error is reported)."""
        prefix = container + "/"
        for records in (self._records, self._unhashed):
            for path in [p for p in records if p.startswith(prefix)]:
                del records[path]
        self._listed.pop(container, None)
        self._zips.discard(container)

    def finish(self, container: str) -> list[PreflightIssue]:
        """Judge every bundle under ``container`` (inside out) and forget its files."""
        prefix = container + "/"
        records = {p: r for p, r in self._records.items() if p.startswith(prefix)}
        for path in records:
            del self._records[path]
        unhashed = {
            p for p in records if p.endswith("/" + SEAL_FILE) and not self.wants(p)
        }  # a streamed payload's seal under a folder without a bundle extension
        self._listed.pop(container, None)
        self._zips.discard(container)
        issues: list[PreflightIssue] = []
        if self._overflow:
            issues.append(
                _not_compared(
                    container, f"more than {self._limits.max_seal_records:,} files to track"
                )
            )
            return issues
        not_hashed = [p for p in self._unhashed if p.startswith(prefix)]
        if not_hashed:
            why = self._unhashed[not_hashed[0]]
            for path in not_hashed:
                del self._unhashed[path]
            issues.append(_not_compared(container, f"{not_hashed[0]} was not hashed: {why}"))
            return issues
        roots = sorted(
            (p[: -len(SEAL_FILE) - 1] for p in records if p.endswith("/" + SEAL_FILE)),
            key=lambda r: r.count("/"),
            reverse=True,
        )
        judged: dict[str, tuple[CodeFacts, bool]] = {}  # bundle folder -> (main code, valid)
        mains: set[str] = set()
        for root in roots:
            bundle = _bundle_folder(root)
            if f"{root}/{SEAL_FILE}" in unhashed:
                issues.append(
                    _not_compared(
                        bundle,
                        "its folder name has no bundle extension and the package payload does "
                        "not list its names ahead, so its files were not hashed",
                    )
                )
                continue
            found = _BundleCheck(root, bundle, records, judged).run()
            issues.extend(found.issues)
            if found.main is not None:
                mains.add(found.main)
                valid = not any(i.severity is Severity.ERROR for i in found.issues)
                judged[bundle] = (records[found.main].code or _NO_CODE, valid)
        issues.extend(_unsealed_bundles(records, mains))
        return issues

    def _store(self, path: str, record: _Record) -> None:
        folder, _, name = path.rpartition("/")
        if name.startswith("._") and self._in_zip(folder):
            return
        if len(self._records) >= self._limits.max_seal_records:
            self._overflow = True
            return
        self._records[path] = record

    def _digest(self, path: str, source: ByteSource) -> _Record:
        sha256 = hashlib.sha256()
        keep = path.endswith(("/Info.plist", "/" + SEAL_FILE)) and source.size <= min(
            self._limits.max_seal_content, self._keep_budget
        )
        if keep:
            self._keep_budget -= source.size
        kept = bytearray()
        for offset in range(0, source.size, _CHUNK):
            chunk = source.read_at(offset, _CHUNK)
            if not chunk:
                break
            sha256.update(chunk)
            if keep:
                kept += chunk
        return _Record(sha256.digest(), bytes(kept) if keep else None)


_NO_CODE = CodeFacts(frozenset(), (), (), True)


@dataclass
class _Found:
    issues: list[PreflightIssue]
    main: str | None


class _BundleCheck:
    """One seal root: its main executable's special slots, then CodeResources."""

    def __init__(
        self,
        root: str,
        bundle: str,
        records: dict[str, _Record],
        judged: dict[str, tuple[CodeFacts, bool]],
    ) -> None:
        self.root, self.bundle, self.records, self.judged = root, bundle, records, judged
        self.issues: list[PreflightIssue] = []

    def run(self) -> _Found:
        seal_record = self.records[f"{self.root}/{SEAL_FILE}"]
        info_path = next(
            (p for p in (f"{self.root}/Info.plist", f"{self.root}/Resources/Info.plist")
             if p in self.records),
            None,
        )  # fmt: skip
        info = self.records[info_path] if info_path else None
        main = self._main_executable(info)
        if main is None:
            return _Found(self.issues, None)
        code = self.records[main].code or _NO_CODE
        self._special_slot(main, code.resources, seal_record, f"the seal ({SEAL_FILE})", 3)
        if info is not None:
            self._special_slot(main, code.info_plist, info, "Info.plist", 1)
        if seal_record.content is None:
            self.issues.append(_not_compared(self.bundle, f"{SEAL_FILE} is too large to read"))
            return _Found(self.issues, main)
        try:
            seal = parse_code_resources(seal_record.content)
        except SealError as exc:
            self.issues.append(_issue(self.bundle, str(exc)))
            return _Found(self.issues, main)
        comparison = seal_problems(seal, self._present(main, seal.files))
        problems = comparison.problems
        if comparison.not_compared:
            self.issues.append(
                _not_compared(
                    self.bundle,
                    f"{comparison.not_compared} sealed file(s) were not compared: the seal "
                    "records only a SHA-1 digest (made before OS X 10.9), or signed code is "
                    "sealed as a plain file",
                )
            )
        for problem in problems[:_PROBLEMS_PER_BUNDLE]:
            self.issues.append(_issue(self.bundle, f"sealed resources: {problem}"))
        if len(problems) > _PROBLEMS_PER_BUNDLE:
            more = len(problems) - _PROBLEMS_PER_BUNDLE
            self.issues.append(_issue(self.bundle, f"sealed resources: {more} more differences"))
        return _Found(self.issues, main)

    def _main_executable(self, info: _Record | None) -> str | None:
        name = _bundle_executable(info.content if info else None)
        if name is None:
            self.issues.append(
                _issue(self.bundle, "no Info.plist naming CFBundleExecutable next to the seal")
            )
            return None
        for candidate in (f"{self.root}/MacOS/{name}", f"{self.root}/{name}"):
            record = self.records.get(candidate)
            if record is not None and record.code is not None:
                return candidate
        self.issues.append(
            _issue(self.bundle, f"the main executable {name!r} named by Info.plist is missing")
        )
        return None

    def _special_slot(
        self, main: str, bundle_slots: tuple[BundleSlot, ...], file: _Record, what: str, number: int
    ) -> None:
        if not bundle_slots:
            if number == 3:
                self.issues.append(
                    _issue(main, f"its signature does not seal {what} (special slot 3 is empty)")
                )
            return
        seen: set[tuple[str, str]] = set()
        for slot in bundle_slots:
            actual = _file_digest(file, slot.hash_type)
            if actual is None or actual[: len(slot.recorded)] == slot.recorded:
                continue
            detail = (
                f"{what} was changed after signing: it no longer matches special slot {number} "
                f"of the {slot.hash_name} CodeDirectory"
            )
            if (slot.architecture, detail) not in seen:
                seen.add((slot.architecture, detail))
                self.issues.append(
                    PreflightIssue(
                        Severity.ERROR, main, msg.INVALID_SIGNATURE, slot.architecture, detail
                    )
                )

    def _present(self, main: str, sealed: Mapping[str, Sealed]) -> dict[str, Present]:
        # A bundle inside this one is one item (its cdhash) when this seal recorded it as
        # nested code; one kept as plain resources (say under Resources/) is compared file by
        # file like any other folder.
        nested = [
            b
            for b in self.judged
            if b.startswith(self.root + "/")
            and getattr(sealed.get(b[len(self.root) + 1 :]), "cdhash", None) is not None
        ]
        present: dict[str, Present] = {}
        for bundle in nested:
            code, valid = self.judged[bundle]
            present[bundle[len(self.root) + 1 :]] = Present(
                cdhashes=code.cdhashes, code_valid=valid and code.valid, is_code=True
            )
        for path, record in self.records.items():
            if not path.startswith(self.root + "/") or path == main:
                continue
            relative = path[len(self.root) + 1 :]
            if relative.startswith("_CodeSignature/") or relative == "CodeResources":
                continue  # the seal itself, and a stapled ticket
            if any(path.startswith(bundle + "/") for bundle in nested):
                continue  # sealed by the nested bundle's own seal
            facts = record.code
            present[relative] = Present(
                sha256=record.sha256,
                symlink=record.symlink,
                cdhashes=facts.cdhashes if facts else frozenset(),
                code_valid=facts.valid if facts else True,
                is_code=bool(facts and facts.cdhashes),
            )
        return present


def _unsealed_bundles(records: dict[str, _Record], mains: set[str]) -> list[PreflightIssue]:
    """Executables whose signature seals resources that are not there (CodeResources lost)."""
    issues = []
    for path, record in records.items():
        if record.code is not None and record.code.resources and path not in mains:
            folder = path.rsplit("/", 2)[0] if "/MacOS/" in path else path.rsplit("/", 1)[0]
            if f"{folder}/{SEAL_FILE}" not in records:
                issues.append(
                    _issue(
                        path,
                        f"its signature seals bundle resources (special slot 3) but "
                        f"{SEAL_FILE} is missing next to it",
                    )
                )
    return issues


def _not_compared(path: str, detail: str) -> PreflightIssue:
    return PreflightIssue(Severity.WARNING, path, msg.SEAL_NOT_COMPARED, None, detail)


def _bundle_folder(root: str) -> str:
    parent, _, last = root.rpartition("/")
    if last == "Contents" and parent:
        return parent
    grandparent, _, versions = parent.rpartition("/")
    if versions == "Versions" and grandparent:
        return grandparent
    return root


def _bundle_executable(content: bytes | None) -> str | None:
    if content is None:
        return None
    try:
        plist = plistlib.loads(content)
    except PLIST_ERRORS:
        return None
    name = plist.get("CFBundleExecutable") if isinstance(plist, dict) else None
    return name if isinstance(name, str) and name and "/" not in name else None


def _file_digest(record: _Record, hash_type: int) -> bytes | None:
    if record.content is not None:
        try:
            return bytes(new_hasher(hash_type, record.content).digest())
        except SignatureFormatError:
            return None
    return record.sha256 if hash_type in (2, 3) else None


def _issue(path: str, detail: str) -> PreflightIssue:
    return PreflightIssue(Severity.ERROR, path, msg.INVALID_SIGNATURE, None, detail)
