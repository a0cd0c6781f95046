"""Package an ``.app`` bundle the way ``ditto -c -k --keepParent`` does, hashing as it writes.

The zip holds the bundle folder at the top, symlinks stored as symlinks (the link text as data,
``S_IFLNK`` in the Unix mode), every entry's Unix mode, deflated data (stored when a 1 MiB
sample shows it is already compressed: deflate would crawl through it for nothing), and ZIP64 records for any
entry over 4 GiB (and for the archive when its offsets need them). Game bundles carry single
files over 4 GiB: without ZIP64 the package step fails ("Large file option has not been set").

One streamed pass: the zip is written through ``_HashingWriter``, which computes the SHA-256 and
the part checksums of exactly the bytes written, so the 20 GB archive is never read back before
upload. The writer refuses ``seek``, so ``zipfile`` streams (data descriptors) instead of
rewriting headers. Part boundaries need the part size before the size is known: the plan is made
for an upper bound of the archive's size and checked against the real size at the end (when
they differ, which only happens near S3's 10,000-part limit, the archive is hashed again).

Re-runs: the zip goes to ``<state dir>/archives/`` with a fingerprint of the bundle's tree (path,
type, size, mtime, mode, link text of every entry); an unchanged bundle reuses its finished zip,
so a resumed notarisation resumes the same upload. Blocking: run on a worker thread.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from uploader.config import UploadLimits
from uploader.errors import ConfigError
from uploader.hashing import (
    DEFAULT_ALGORITHM,
    ChecksumAlgorithm,
    FileDigest,
    FileIdentity,
    hash_file_sync,
)
from uploader.planning import UploadPlan, plan_upload
from uploader.state_dir import DIR_MODE, FILE_MODE, write_private

READ_SIZE = 4 * 1024 * 1024
# Worst-case zip growth: deflate adds < 0.1 % plus a few bytes per block; headers are per entry.
_PER_ENTRY_OVERHEAD = 256
PROGRESS_EVERY = 64 * 1024 * 1024
SAMPLE_BYTES = 1024 * 1024
STORE_ABOVE_RATIO = 0.95


class BundleChangedError(ConfigError):
    def __init__(self, path: Path) -> None:
        super().__init__(f"{path}: changed while notaryd was zipping it; nothing was submitted. "
                         "Run again once the build is final.")


@dataclass(frozen=True)
class Entry:
    relative: str  # as stored: "Game.app/Contents/MacOS/Game"
    path: Path
    st: os.stat_result


def walk_bundle(bundle: Path) -> Iterator[Entry]:
    """Every entry under (and including) the bundle folder, sorted, symlinks not followed."""
    top = bundle.name
    pending = [(bundle, top)]
    while pending:
        folder, relative = pending.pop()
        st = os.lstat(folder)
        yield Entry(relative + "/", folder, st)
        try:
            names = sorted(os.listdir(folder), reverse=True)
        except OSError as error:
            raise ConfigError(f"{folder}: cannot read the folder ({error.strerror}); fix its "
                              "permissions and try again") from None
        for name in names:
            child = folder / name
            child_st = os.lstat(child)
            child_relative = f"{relative}/{name}"
            if stat.S_ISDIR(child_st.st_mode):
                pending.append((child, child_relative))
            elif stat.S_ISREG(child_st.st_mode) or stat.S_ISLNK(child_st.st_mode):
                yield Entry(child_relative, child, child_st)
            else:
                raise ConfigError(f"{child}: a bundle may hold only files, folders and symlinks; "
                                  "remove this special file (socket, fifo or device)")


def fingerprint(entries: list[Entry]) -> str:
    """Changes whenever anything a zip of these entries holds could have changed."""
    digest = hashlib.sha256()
    for e in entries:
        link = os.readlink(e.path) if stat.S_ISLNK(e.st.st_mode) else ""
        digest.update(f"{e.relative}\0{e.st.st_mode}\0{e.st.st_size}\0{e.st.st_mtime_ns}\0"
                      f"{e.st.st_ino}\0{link}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


class _HashingWriter:
    """A forward-only file that hashes what is written: SHA-256 and one checksum per part."""

    def __init__(self, path: Path, part_size: int, algorithm: ChecksumAlgorithm) -> None:
        # 0600 from the start, like everything in the state dir (uploader.state_dir): a looser
        # zip would be "tightened", with a warning, on every later run.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                     FILE_MODE)
        os.fchmod(fd, FILE_MODE)  # a .partial left by an older version may be looser
        self._file = os.fdopen(fd, "wb")
        self._part_size = part_size
        self._algorithm = algorithm
        self.sha = hashlib.sha256()
        self.parts: list[int] = []
        self._crc = 0
        self._in_part = 0
        self.written = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast("B")
        self._file.write(view)
        self.sha.update(view)
        pos = 0
        while pos < len(view):  # a write may straddle part boundaries
            take = min(self._part_size - self._in_part, len(view) - pos)
            self._crc = self._algorithm.update(view[pos : pos + take], self._crc)
            pos += take
            self._in_part += take
            if self._in_part == self._part_size:
                self.parts.append(self._crc)
                self._crc, self._in_part = 0, 0
        self.written += len(view)
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

    def finish(self) -> list[int]:
        """Part checksums, including the last partial part (or one empty part)."""
        if self._in_part or not self.parts:
            self.parts.append(self._crc)
        return self.parts


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


def _write_entries(archive: zipfile.ZipFile, entries: list[Entry], progress: _ReadReporter) -> None:
    for e in entries:
        mode = e.st.st_mode
        info = zipfile.ZipInfo(e.relative, _zip_time(e.st.st_mtime))  # lstat's: links not followed
        info.create_system = 3  # Unix: external_attr's high 16 bits are the st_mode
        info.external_attr = (mode & 0xFFFF) << 16
        if stat.S_ISDIR(mode):
            info.external_attr |= 0x10  # MS-DOS directory bit, as ditto and zip(1) set it
            archive.writestr(info, b"")
        elif stat.S_ISLNK(mode):
            info.compress_type = zipfile.ZIP_STORED
            archive.writestr(info, os.fsencode(os.readlink(e.path)))
        else:
            info.compress_type = _compression_for(e.path, e.st.st_size)
            info.file_size = e.st.st_size
            _copy_file(archive, info, e, progress)


def _zip_time(mtime: float) -> tuple[int, int, int, int, int, int]:
    """Local time as zip stores it, clamped to the years a zip can say (1980-2107)."""
    t = time.localtime(mtime)[:6]
    if t[0] < 1980:
        return (1980, 1, 1, 0, 0, 0)
    if t[0] > 2107:
        return (2107, 12, 31, 23, 59, 58)
    return (t[0], t[1], t[2], t[3], t[4], t[5])


def _compression_for(path: Path, size: int) -> int:
    """Deflate, unless a sample says the data is already compressed.

    Deflate runs at ~20 MiB/s on incompressible data (game assets, media, nested archives) and
    saves nothing there: such entries are stored, which costs only the copy.
    """
    if size < SAMPLE_BYTES:
        return zipfile.ZIP_DEFLATED
    with open(path, "rb") as f:
        sample = f.read(SAMPLE_BYTES)
    packed = len(zlib.compress(sample, 1))
    return zipfile.ZIP_STORED if packed > len(sample) * STORE_ABOVE_RATIO else zipfile.ZIP_DEFLATED


def _copy_file(archive: zipfile.ZipFile, info: zipfile.ZipInfo, e: Entry,
               progress: _ReadReporter) -> None:
    copied = 0
    # zipfile picks ZIP64 from info.file_size (entries near or over 4 GiB)
    with open(e.path, "rb") as source, archive.open(info, "w") as target:
        while chunk := source.read(READ_SIZE):
            target.write(chunk)
            copied += len(chunk)
            progress.add(len(chunk))
    after = os.lstat(e.path)
    if copied != e.st.st_size or after.st_mtime_ns != e.st.st_mtime_ns:
        raise BundleChangedError(e.path)


def package_bundle(
    bundle: Path,
    archive_path: Path,
    *,
    part_size: int,
    limits: UploadLimits | None = None,
    algorithm: ChecksumAlgorithm = DEFAULT_ALGORITHM,
    on_progress: Callable[[int, int], None] | None = None,
) -> FileDigest:
    """Zip ``bundle`` to ``archive_path`` (atomically) and return the zip's digest. Blocking.

    ``on_progress(done, total)`` counts the bundle's file bytes read (the zip may be smaller).
    """
    entries = list(walk_bundle(bundle))
    upper_bound = sum(e.st.st_size + e.st.st_size // 500 + len(e.relative) * 2
                      + _PER_ENTRY_OVERHEAD for e in entries) + 1024
    planned = plan_upload(upper_bound, part_size, limits)
    archive_path.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    partial = archive_path.with_name(archive_path.name + ".partial")
    writer = _HashingWriter(partial, planned.part_size, algorithm)
    source_bytes = sum(e.st.st_size for e in entries if stat.S_ISREG(e.st.st_mode))
    try:
        with zipfile.ZipFile(writer, "w", allowZip64=True) as archive:
            _write_entries(archive, entries, _ReadReporter(source_bytes, on_progress))
        writer.sync()
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    writer.close()
    os.replace(partial, archive_path)
    plan = plan_upload(writer.written, part_size, limits)
    if plan.part_size != planned.part_size:
        return hash_file_sync(archive_path, plan, algorithm)
    return _digest(archive_path, plan, algorithm, writer)


def _digest(path: Path, plan: UploadPlan, algorithm: ChecksumAlgorithm,
            writer: _HashingWriter) -> FileDigest:
    parts = writer.finish()
    whole = 0
    for number, value in enumerate(parts, start=1):
        whole = algorithm.combine(whole, value, plan.part(number).length)
    return FileDigest(FileIdentity.of(path), writer.sha.hexdigest(), plan.part_size, algorithm,
                      tuple(algorithm.to_wire(v) for v in parts), algorithm.to_wire(whole))


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


def package_for_submission(
    bundle: Path,
    state_dir: Path,
    *,
    part_size: int,
    limits: UploadLimits | None = None,
    algorithm: ChecksumAlgorithm = DEFAULT_ALGORITHM,
    on_progress: Callable[[int, int], None] | None = None,
) -> PackagedBundle:
    """Zip the bundle into the state dir, or reuse the zip of the same, unchanged tree."""
    archive = archive_path_for(bundle, state_dir)
    stamp = archive.with_name(archive.name + ".tree")
    tree = fingerprint(list(walk_bundle(bundle)))
    if archive.is_file() and stamp.is_file() and stamp.read_text(encoding="ascii") == tree:
        return PackagedBundle(bundle, archive, None)
    stamp.unlink(missing_ok=True)
    digest = package_bundle(bundle, archive, part_size=part_size, limits=limits,
                            algorithm=algorithm, on_progress=on_progress)
    if fingerprint(list(walk_bundle(bundle))) != tree:
        archive.unlink(missing_ok=True)
        raise BundleChangedError(bundle)
    write_private(stamp, tree.encode("ascii"))
    return PackagedBundle(bundle, archive, digest)


def remove_archive(archive: Path) -> None:
    archive.unlink(missing_ok=True)
    archive.with_name(archive.name + ".tree").unlink(missing_ok=True)

