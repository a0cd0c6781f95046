"""Package an ``.app`` bundle the way ``ditto -c -k --keepParent`` does, hashing as it writes.

The zip holds the bundle folder at the top, symlinks stored as symlinks (the link text as data,
``S_IFLNK`` in the Unix mode), every entry's Unix mode, deflated data (stored when a 1 MiB
sample shows it is already compressed: deflate would crawl through it for nothing), and ZIP64 records for any
entry over 4 GiB (and for the archive when its offsets need them). Game bundles carry single
files over 4 GiB: without ZIP64 the package step fails ("Large file option has not been set").

One streamed pass: the zip is written through ``_HashingWriter``, which feeds exactly the bytes
written to the one hasher (``uploader.hashing.RunningDigest``: SHA-256 and the part checksums
in the ``NOTARYD_CHECKSUM`` algorithm), so the 20 GB archive is never read back before upload.
The writer refuses ``seek``, so ``zipfile`` streams (data descriptors) instead of rewriting headers. Part boundaries need the part size before the size is known: the plan is made
for an upper bound of the archive's size and checked against the real size at the end (when
they differ, which only happens near S3's 10,000-part limit, the archive is hashed again).

The bundle is walked and read through ``uploader.bundle_walk`` (relative to folder descriptors,
never following a link, each member checked before and after it is read). No zip holds an entry
below a symlink entry. On any failure (a changed member, a full disk) the zip is removed.

Re-runs: the zip goes to ``<work dir>/archives/`` with a fingerprint of the bundle's tree (path,
type, size, mtime, ctime, mode, link text of every entry); an unchanged bundle reuses its
finished zip, so a resumed notarisation resumes the same upload. Blocking: run on a worker
thread; ``stop`` ends the reading between two reads.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import threading
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict, Unpack

from uploader.buffers import page_aligned
from uploader.bundle_walk import BeforeOpen, BundleChangedError, BundleTree, Member
from uploader.config import UploadLimits
from uploader.hashing import (
    DEFAULT_ALGORITHM,
    ChecksumAlgorithm,
    FileDigest,
    RunningDigest,
    hash_file_sync,
)
from uploader.planning import plan_upload
from uploader.source_file import FileIdentity
from uploader.state_dir import DIR_MODE, FILE_MODE, write_private

READ_SIZE = 4 * 1024 * 1024
# Worst-case zip growth: deflate adds < 0.1 % plus a few bytes per block; headers are per entry.
_PER_ENTRY_OVERHEAD = 256
PROGRESS_EVERY = 64 * 1024 * 1024
SAMPLE_BYTES = 1024 * 1024
STORE_ABOVE_RATIO = 0.95


__all__ = ["BundleChangedError", "PackagedBundle", "Packing", "archive_dir", "archive_path_for",
           "package_bundle", "package_for_submission", "remove_archive"]


def fingerprint(tree: BundleTree, members: list[Member]) -> str:
    """Changes whenever anything a zip of these members holds could have changed."""
    digest = hashlib.sha256()
    for m in members:
        link = tree.read_link(m) if m.is_link else ""
        digest.update(f"{m.relative}\0{m.st.st_mode}\0{m.st.st_size}\0{m.st.st_mtime_ns}\0"
                      f"{m.st.st_ctime_ns}\0{m.st.st_ino}\0{link}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


class _HashingWriter:
    """A forward-only file that feeds what is written to the one hasher (``RunningDigest``):
    SHA-256 and one checksum per part, in any ``ChecksumAlgorithm``."""

    def __init__(self, path: Path, part_size: int, algorithm: ChecksumAlgorithm) -> None:
        # 0600 from the start, like everything in the state dir (uploader.state_dir): a looser
        # zip would be "tightened", with a warning, on every later run.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                     FILE_MODE)
        os.fchmod(fd, FILE_MODE)  # a .partial left by an older version may be looser
        self._file = os.fdopen(fd, "wb")
        self.digest = RunningDigest(part_size, algorithm)

    @property
    def written(self) -> int:
        return self.digest.size

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast("B")
        self._file.write(view)
        self.digest.update(view)
        return len(view)

    def tell(self) -> int:
        return self.written

    def seek(self, *_: object) -> int:
        raise OSError("streamed zip: not seekable")

    def flush(self) -> None:
        self._file.flush()

    def sync(self) -> None:
        """Flush and fsync, so the rename that follows publishes a complete zip."""
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


class _ReadReporter:
    """Reports source bytes read, every PROGRESS_EVERY bytes and at the end."""

    def __init__(self, total: int, report: Callable[[int, int], None] | None) -> None:
        self.total, self.done, self._report = total, 0, report
        self._next = PROGRESS_EVERY

    def add(self, n: int) -> None:
        self.done += n
        if self._report is not None and (self.done >= self._next or self.done == self.total):
            self._report(self.done, self.total)
            self._next = self.done + PROGRESS_EVERY


def _write_entries(archive: zipfile.ZipFile, tree: BundleTree, members: list[Member],
                   progress: _ReadReporter, stop: threading.Event | None) -> None:
    links: set[str] = set()
    buffer = page_aligned(READ_SIZE)
    for m in members:
        if any("/".join(m.parts[:depth]) in links for depth in range(1, len(m.parts))):
            raise BundleChangedError(tree.bundle, m.relative, "it lies below a symlink")
        mode = m.st.st_mode
        info = zipfile.ZipInfo(m.relative, _zip_time(m.st.st_mtime))  # lstat's: links not followed
        info.create_system = 3  # Unix: external_attr's high 16 bits are the st_mode
        info.external_attr = (mode & 0xFFFF) << 16
        if m.is_folder:
            info.external_attr |= 0x10  # MS-DOS directory bit, as ditto and zip(1) set it
            archive.writestr(info, b"")
        elif m.is_link:
            links.add("/".join(m.parts))
            info.compress_type = zipfile.ZIP_STORED
            archive.writestr(info, os.fsencode(tree.read_link(m)))
        else:
            info.file_size = m.st.st_size
            with tree.opened_file(m) as fd:
                info.compress_type = _compression_for(fd, m.st.st_size)
                # zipfile picks ZIP64 from info.file_size (entries near or over 4 GiB)
                with archive.open(info, "w") as target:
                    tree.copy(fd, m, target.write, buffer, stop=stop, on_read=progress.add)


def _zip_time(mtime: float) -> tuple[int, int, int, int, int, int]:
    """Local time as zip stores it, clamped to the years a zip can say (1980-2107)."""
    t = time.localtime(mtime)[:6]
    if t[0] < 1980:
        return (1980, 1, 1, 0, 0, 0)
    if t[0] > 2107:
        return (2107, 12, 31, 23, 59, 58)
    return (t[0], t[1], t[2], t[3], t[4], t[5])


def _compression_for(fd: int, size: int) -> int:
    """Deflate, unless a sample says the data is already compressed.

    Deflate runs at ~20 MiB/s on incompressible data (game assets, media, nested archives) and
    saves nothing there: such entries are stored, which costs only the copy.
    """
    if size < SAMPLE_BYTES:
        return zipfile.ZIP_DEFLATED
    sample = os.pread(fd, SAMPLE_BYTES, 0)
    packed = len(zlib.compress(sample, 1))
    return zipfile.ZIP_STORED if packed > len(sample) * STORE_ABOVE_RATIO else zipfile.ZIP_DEFLATED


class Packing(TypedDict, total=False):
    """What ``package_bundle`` and ``package_for_submission`` take besides the part size."""

    limits: UploadLimits | None
    algorithm: ChecksumAlgorithm  # NOTARYD_CHECKSUM; DEFAULT_ALGORITHM when absent
    on_progress: Callable[[int, int], None] | None
    stop: threading.Event | None
    before_open: BeforeOpen | None


def package_bundle(bundle: Path, archive_path: Path, *, part_size: int,
                   **options: Unpack[Packing]) -> FileDigest:
    """Zip ``bundle`` to ``archive_path`` (atomically) and return the zip's digest. Blocking.

    ``on_progress(done, total)`` counts the bundle's file bytes read (the zip may be smaller).
    """
    with BundleTree(bundle, before_open=options.get("before_open")) as tree:
        return _package(tree, tree.walk(), archive_path, part_size, options)


def _package(tree: BundleTree, members: list[Member], archive_path: Path, part_size: int,
             options: Packing) -> FileDigest:
    limits = options.get("limits")
    algorithm = options.get("algorithm", DEFAULT_ALGORITHM)
    upper_bound = sum(m.st.st_size + m.st.st_size // 500 + len(m.relative) * 2
                      + _PER_ENTRY_OVERHEAD for m in members) + 1024
    planned = plan_upload(upper_bound, part_size, limits)
    archive_path.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)  # private: 0700
    partial = archive_path.with_name(archive_path.name + ".partial")
    writer = _HashingWriter(partial, planned.part_size, algorithm)
    source_bytes = sum(m.st.st_size for m in members if stat.S_ISREG(m.st.st_mode))
    try:
        with zipfile.ZipFile(writer, "w", allowZip64=True) as archive:
            _write_entries(archive, tree, members,
                           _ReadReporter(source_bytes, options.get("on_progress")),
                           options.get("stop"))
        writer.sync()
        writer.close()
        os.replace(partial, archive_path)
    except BaseException:
        # close() flushes what is buffered: on a full disk it fails too, and the partial zip
        # must go all the same (it is what fills the disk)
        with contextlib.suppress(OSError):
            writer.close()
        partial.unlink(missing_ok=True)
        raise
    try:
        plan = plan_upload(writer.written, part_size, limits)
        if plan.part_size != planned.part_size:
            return hash_file_sync(archive_path, plan, algorithm)
        return writer.digest.digest(FileIdentity.of(archive_path))
    except BaseException:
        archive_path.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class PackagedBundle:
    bundle: Path
    archive: Path
    digest: FileDigest | None  # None when an earlier run's zip was reused (hash is in the DB)


def archive_dir(state_dir: Path) -> Path:
    """Where the zips made from bundles live (inside the private state dir)."""
    return state_dir / "archives"


def archive_path_for(bundle: Path, state_dir: Path) -> Path:
    """One zip per bundle path, so a re-run finds the zip an interrupted run made."""
    tag = hashlib.sha256(os.fsencode(bundle)).hexdigest()[:12]
    return archive_dir(state_dir) / f"{bundle.stem}-{tag}.zip"


def package_for_submission(bundle: Path, state_dir: Path, *, part_size: int,
                           **options: Unpack[Packing]) -> PackagedBundle:
    """Zip the bundle into the state dir, or reuse the zip of the same, unchanged tree."""
    archive = archive_path_for(bundle, state_dir)
    stamp = archive.with_name(archive.name + ".tree")
    with BundleTree(bundle, before_open=options.get("before_open")) as tree:
        members = tree.walk()
        tree_print = fingerprint(tree, members)
        if archive.is_file() and stamp.is_file() and stamp.read_text(encoding="ascii") == tree_print:
            return PackagedBundle(bundle, archive, None)
        stamp.unlink(missing_ok=True)
        digest = _package(tree, members, archive, part_size, options)
        try:
            if fingerprint(tree, tree.walk()) != tree_print:  # a member added or removed
                raise BundleChangedError(bundle)
            write_private(stamp, tree_print.encode("ascii"))
        except BaseException:
            remove_archive(archive)
            raise
    return PackagedBundle(bundle, archive, digest)


def remove_archive(archive: Path) -> None:
    archive.unlink(missing_ok=True)
    archive.with_name(archive.name + ".tree").unlink(missing_ok=True)

