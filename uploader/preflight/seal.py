"""A bundle's resource seal: ``_CodeSignature/CodeResources`` against the files as they are now.

CodeResources is a plist with ``files``/``rules`` (the version 1 seal) and ``files2``/``rules2``
(version 2, what codesign writes and checks since OS X 10.9). A rule maps a regular expression
over the path relative to the seal's root (``Contents/`` of an app, ``Versions/A/`` of a
framework) to include (the default), ``omit``, ``exclude``, ``optional`` or ``nested``, with a
``weight``: the heaviest matching rule decides. A ``files2`` entry is a digest (``hash`` SHA-1,
``hash2`` SHA-256), a ``symlink`` target, or nested code (``cdhash`` + ``requirement``) (rcodesign
``code_resources.rs``; Apple TN2206). Anything that differs is reported by relative path.
"""

from __future__ import annotations

import plistlib
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from xml.parsers.expat import ExpatError

# What plistlib raises on damaged XML or binary plists (expat errors are not ValueErrors).
PLIST_ERRORS = (
    plistlib.InvalidFileException,
    ExpatError,
    ValueError,
    TypeError,
    OverflowError,
    AttributeError,
    IndexError,
    LookupError,  # an XML declaration naming an unknown encoding (KeyError is one too)
    struct.error,
    RecursionError,
)
_MAX_RULES = 256
_MAX_PATTERN = 1024
_MAX_ENTRIES = 1_000_000
# A repeated group holding a quantifier or an alternation can backtrack for ever on a hostile
# seal ("(a+)+$", "(a|aa)+$"); codesign's own rules never repeat a group.
_NESTED_QUANTIFIER = re.compile(r"\([^()]*[+*|{][^()]*\)[+*{]")


class SealError(ValueError):
    """CodeResources does not parse."""


@dataclass(frozen=True)
class Rule:
    pattern: re.Pattern[str]
    weight: float
    omit: bool
    optional: bool


@dataclass(frozen=True)
class Sealed:
    """One ``files2`` (or ``files``) entry."""

    sha1: bytes | None = None
    sha256: bytes | None = None
    symlink: str | None = None
    cdhash: bytes | None = None
    optional: bool = False


@dataclass(frozen=True)
class Seal:
    version: int
    files: dict[str, Sealed]
    rules: tuple[Rule, ...]

    def rule_for(self, relative: str) -> Rule | None:
        best: Rule | None = None
        for rule in self.rules:
            if (best is None or rule.weight > best.weight) and rule.pattern.search(relative):
                best = rule
        return best


@dataclass(frozen=True)
class Present:
    """What is at a sealed path now: a file's SHA-256, a symlink's target, or code's cdhashes."""

    sha256: bytes | None = None
    symlink: str | None = None
    cdhashes: frozenset[bytes] = frozenset()
    code_valid: bool = True
    is_code: bool = False


def parse_code_resources(data: bytes) -> Seal:
    try:
        plist = plistlib.loads(data)
    except PLIST_ERRORS as exc:
        raise SealError(f"_CodeSignature/CodeResources is not a readable plist ({exc})") from exc
    if not isinstance(plist, dict):
        raise SealError("_CodeSignature/CodeResources is not a dictionary")
    version = 2 if isinstance(plist.get("files2"), dict) else 1
    files = plist.get("files2" if version == 2 else "files")
    rules = plist.get("rules2" if version == 2 else "rules")
    if not isinstance(files, dict) or not isinstance(rules, dict):
        raise SealError(f"_CodeSignature/CodeResources has no files{'2' if version == 2 else ''}")
    if len(files) > _MAX_ENTRIES or len(rules) > _MAX_RULES:
        raise SealError("_CodeSignature/CodeResources has implausibly many entries")
    return Seal(version, _entries(files), _rules(rules))


def _entries(files: Mapping[object, object]) -> dict[str, Sealed]:
    out = {}
    for name, value in files.items():
        if not isinstance(name, str):
            continue
        if isinstance(value, bytes):
            out[name] = Sealed(sha1=value)
        elif isinstance(value, dict):
            out[name] = Sealed(
                sha1=_bytes(value.get("hash")),
                sha256=_bytes(value.get("hash2")),
                symlink=value["symlink"] if isinstance(value.get("symlink"), str) else None,
                cdhash=_bytes(value.get("cdhash")),
                optional=value.get("optional") is True,
            )
    return out


def _bytes(value: object) -> bytes | None:
    return value if isinstance(value, bytes) else None


def _rules(rules: Mapping[object, object]) -> tuple[Rule, ...]:
    out = []
    for pattern, value in rules.items():
        if not isinstance(pattern, str) or len(pattern) > _MAX_PATTERN:
            continue
        if _NESTED_QUANTIFIER.search(pattern):
            continue
        try:
            compiled = re.compile(pattern)
        except re.error:
            continue
        options = value if isinstance(value, dict) else {}
        weight = options.get("weight", 1.0)
        out.append(
            Rule(
                compiled,
                float(weight) if isinstance(weight, int | float) else 1.0,
                omit=options.get("omit") is True or options.get("exclude") is True,
                optional=options.get("optional") is True,
            )
        )
    return tuple(out)


@dataclass(frozen=True)
class Comparison:
    problems: list[str]  # one line per difference, sorted by path
    not_compared: int  # plain files with no SHA-256 on one side (see _uncomparable)


def seal_problems(seal: Seal, present: Mapping[str, Present]) -> Comparison:
    """Every difference between the seal and what is present."""
    problems: list[tuple[str, str]] = []
    not_compared = 0
    for relative, sealed in seal.files.items():
        now = present.get(relative)
        if now is None:
            rule = seal.rule_for(relative)
            if not (sealed.optional or (rule is not None and (rule.omit or rule.optional))):
                problems.append((relative, f"{relative} was sealed but is missing"))
            continue
        if _uncomparable(sealed, now):
            not_compared += 1
        elif problem := _differs(relative, sealed, now):
            problems.append((relative, problem))
    for relative in present:
        if relative in seal.files:
            continue
        rule = seal.rule_for(relative)
        if rule is not None and not rule.omit:
            problems.append((relative, f"{relative} was added after the bundle was signed"))
    return Comparison([problem for _path, problem in sorted(problems)], not_compared)


def _uncomparable(sealed: Sealed, now: Present) -> bool:
    """A plain file entry with only a SHA-1 digest (seals made before OS X 10.9; only SHA-256
    is computed), or signed code that was not hashed whole because it sits where code is
    normally sealed by cdhash."""
    plain = sealed.symlink is None and sealed.cdhash is None and now.symlink is None
    return plain and (sealed.sha256 is None or now.sha256 is None)


def _differs(relative: str, sealed: Sealed, now: Present) -> str | None:
    if sealed.symlink is not None:
        if now.symlink == sealed.symlink:
            return None
        what = f"a symlink to {now.symlink!r}" if now.symlink is not None else "a regular file"
        return f"{relative} was sealed as a symlink to {sealed.symlink!r} and is now {what}"
    if now.symlink is not None:
        return f"{relative} was sealed as a file and is now a symlink to {now.symlink!r}"
    if sealed.cdhash is not None:
        if not now.is_code:
            return f"{relative} was sealed as nested code and is no longer signed code"
        if sealed.cdhash not in now.cdhashes:
            return (
                f"nested code {relative} does not have the cdhash the seal recorded "
                f"({sealed.cdhash.hex()}): it was changed or re-signed after the bundle was signed"
            )
        if not now.code_valid:
            return f"nested code {relative} is itself invalid (see its own findings)"
        return None
    if now.sha256 == sealed.sha256:
        return None
    return f"{relative} was modified after the bundle was signed"
