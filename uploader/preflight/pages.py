"""Do the bytes still match the CodeDirectory? Code pages and the special slots held in the signature.

Code page *i* is bytes ``[i * pageSize, min((i + 1) * pageSize, codeLimit))`` of the slice; its
hash is code slot *i* (rcodesign ``specification.rs``, "Computing Content Digests"). The slice is
read once, forward, in chunks of about 1 MiB, and every CodeDirectory with the same page size
hashes each page as it goes past, so memory stays at one chunk whatever the file's size.

Measured with ``python -m benchmarks.preflight_integrity`` (2 cores shared with other work, load
average about 11, Python 3.11, warm page cache, median of 3): a sealed Game.app of 97 Mach-O
files (1,581 MiB of code, every page SHA-256-hashed) plus a 2 GiB sparse resource pack and 200
small files (3.54 GiB in all, every byte hashed once) took 3.96 s of CPU (14.0 s wall) and
36 MiB peak RSS, against 2.85 s CPU (10.0 s wall) and 16 MiB for one hashlib SHA-256 pass over
the same files; as a stored zip 4.39 s CPU, 37 MiB; as a deflated zip 10.8 s CPU (35.8 s wall)
and 92 MiB, against 11.3 s CPU for inflating and hashing every member (deflated members were
then spooled in memory). Since they are re-read through zipfile's seekable stream instead (the
spool is bounded for hostile inputs), a smaller run (``--code-mib 256 --pack-mib 256 --runs 1``:
290 MiB of Mach-O) takes 2.94 s CPU and 82 MiB for the deflated zip against 1.38 s for
inflating and hashing every member: the signature at a member's end makes it inflate twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from uploader.preflight.codedirectory import (
    EMBEDDED_SPECIAL_SLOTS,
    CodeDirectory,
    SignatureBlobs,
)
from uploader.preflight.source import ByteSource

_CHUNK = 1 << 20
_PAGES_NAMED = 3  # a detail names the first few differing pages, then counts the rest
_CONSTRUCTORS: dict[int, Callable[..., Any]] = {
    1: hashlib.sha1,
    2: hashlib.sha256,
    3: hashlib.sha256,
    4: hashlib.sha384,
}


def page_problems(
    source: ByteSource, base: int, size: int, directories: Sequence[CodeDirectory]
) -> list[str]:
    """Why the code pages of the slice at ``base`` (``size`` bytes) do not match, if they don't."""
    problems: list[str] = []
    groups: dict[tuple[int, int], list[CodeDirectory]] = {}
    for cd in directories:
        if cd.code_limit > size:
            problems.append(
                f"the {cd.hash_name} CodeDirectory covers {cd.code_limit} bytes but the slice "
                f"has {size}: the file was truncated after signing"
            )
            continue
        expected_slots = -(-cd.code_limit // cd.page_size)
        if cd.n_code_slots != expected_slots:
            problems.append(
                f"the {cd.hash_name} CodeDirectory has {cd.n_code_slots} page hashes for "
                f"{cd.code_limit} bytes of code ({expected_slots} expected)"
            )
            continue
        if cd.n_code_slots:
            groups.setdefault((cd.page_size, cd.code_limit), []).append(cd)
    for (page_size, limit), group in groups.items():
        problems.extend(_compare_pages(source, base, page_size, limit, group))
    return problems


def _compare_pages(
    source: ByteSource, base: int, page_size: int, limit: int, group: list[CodeDirectory]
) -> list[str]:
    checks = [(cd, _CONSTRUCTORS[cd.hash_type], cd.hash_size) for cd in group]
    differing: dict[int, list[int]] = {cd.slot: [] for cd in group}
    # Small pages: many per read. A page larger than a read (a disk image's single page) is
    # hashed across reads, so memory stays at one read either way.
    chunk_size = _CHUNK - _CHUNK % page_size if page_size <= _CHUNK else _CHUNK
    page, hashers, page_end = 0, [c() for _, c, _ in checks], min(page_size, limit)
    for offset in range(0, limit, chunk_size):
        want = min(chunk_size, limit - offset)
        data = source.read_at(base + offset, want)
        if len(data) < want:
            return [f"the slice ends at byte {offset + len(data)}, inside its signed code"]
        view = memoryview(data)
        if page_size > _CHUNK:
            for hasher in hashers:
                hasher.update(view)
            if offset + want < page_end:
                continue
            pieces = [(page, hashers)]
            page, hashers = page + 1, [c() for _, c, _ in checks]
            page_end = min(page_end + page_size, limit)
        else:
            pieces = [
                (page + i, [c(view[start : start + page_size]) for _, c, _ in checks])
                for i, start in enumerate(range(0, want, page_size))
            ]
            page += len(pieces)
        for number, digests in pieces:
            for (cd, _, hash_size), digest in zip(checks, digests, strict=True):
                if digest.digest()[:hash_size] != cd.code_slot(number):
                    differing[cd.slot].append(number)
    problems = []
    for cd in group:
        pages = differing[cd.slot]
        if not pages:
            continue
        named = ", ".join(
            f"page {p} (bytes {p * page_size}-{min((p + 1) * page_size, limit) - 1})"
            for p in pages[:_PAGES_NAMED]
        )
        more = f" and {len(pages) - _PAGES_NAMED} more" if len(pages) > _PAGES_NAMED else ""
        problems.append(
            f"{named}{more} of {cd.n_code_slots} no longer match the {cd.hash_name} "
            "CodeDirectory: the code was changed after signing"
        )
    return problems


def special_slot_problems(blobs: SignatureBlobs) -> list[str]:
    """Requirements and entitlements blobs that differ from what each CodeDirectory recorded."""
    problems = []
    for cd in blobs.directories:
        for slot, name in EMBEDDED_SPECIAL_SLOTS.items():
            # A blob the directory does not cover is ignored, as the kernel ignores it.
            recorded, blob = cd.special_slot(slot), blobs.blobs.get(slot)
            if recorded is None:
                continue
            if blob is None:
                problem = (
                    f"the {cd.hash_name} CodeDirectory records {name} (special slot {slot}) "
                    "but the signature has none"
                )
            elif cd.digest(blob) != recorded:
                problem = (
                    f"the {name} blob differs from its hash in special slot {slot} of the "
                    f"{cd.hash_name} CodeDirectory: it was changed after signing"
                )
            else:
                continue
            problems.append(problem)
    return problems
