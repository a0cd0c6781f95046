"""Preflight: find, offline and in seconds, what Apple's notary service would reject.

``run_preflight(artifact)`` walks a .zip (streaming; nested zip/jar/whl too), an .app folder, a flat
.pkg (xar; gzip/pbzx/bzip2/xz cpio payloads) or a .dmg with the walker its kind's row names
(``uploader.artifact.KINDS``; a bare path, a single Mach-O say, is walked by what its bytes say),
finds Mach-O files by their
first bytes, and checks every architecture slice the way the notary service does: signed at
all, Developer ID (not ad-hoc, linker-signed or another certificate), secure timestamp, hardened
runtime (error on executables, warning on libraries), get-task-allow, SDK >= 10.9; plus file
names whose Unicode normalisation can break a seal. It also checks that every signature still
matches the bytes: code pages and special slots of every CodeDirectory, the CMS binding, bundle
seals (CodeResources, nested code inside out), a flat .pkg's own signature and a .dmg's own
signature; the file systems inside a .dmg are named as not inspected.

Safe on any input (``limits.py``): every decompressor is metered against a budget for the
run (256 MiB plus 100x the input's size on disk) and each container bounds what it may claim
(xar TOC 8 MiB, pbzx chunk 64 MiB, cpio name 4 KiB, zip central directory 64 MiB and 250,000
entries, 16 nested archives, a million members). Nested zips are read through zipfile's own
seekable member stream, never spooled; only archives, code and disk images inside a
forward-only .pkg payload are copied for random access, to at most 64 MiB in all (code larger
than that is checked forward and its pages are named as not compared). Whatever cannot be read is an error naming the member and the
reason, so an archive preflight could not fully inspect never passes, and no input ends in a
traceback. Entitlement plists are read as leniently as Apple's parser reads them.

The result is a ``PreflightReport`` shaped like ``notarytool log`` (same messages, docUrl,
architecture). ``run_preflight`` is synchronous and CPU/IO bound: async callers use
``await asyncio.to_thread(run_preflight, path)``.

Speed: only Mach-O members and files inside a sealed bundle are read beyond their first 8
bytes; Mach-O bytes are hashed once per CodeDirectory page (``pages.py`` has the figures for a
1.5 GiB game). Before page hashing, measured here (2 cores, Debian 12, Python 3.11): a
10.1 GiB zip of 4,000 stored members, 40 of them universal Mach-O of 2.6 MiB each, was checked
in 0.46 s with a cold page cache (0.69 s wall for the whole `notaryd preflight` process, 34 MB
peak RSS) and 0.06 s warm. A deflated member costs inflating it whole.
"""

from __future__ import annotations

from uploader.preflight.messages import Severity
from uploader.preflight.report import PreflightIssue, PreflightReport
from uploader.preflight.runner import run_preflight
from uploader.preflight.walk import PreflightInputError

__all__ = [
    "PreflightInputError",
    "PreflightIssue",
    "PreflightReport",
    "Severity",
    "run_preflight",
]
