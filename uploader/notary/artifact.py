"""The ends of a notarisation: what goes in (a bundle is zipped), what comes out (stapled).

* ``prepare``: a ``.app`` folder is packaged like ``ditto -c -k --keepParent`` into the work dir
  (``uploader.bundle_zip``, hashing as it writes; ``uploader.work_dir``: room, locks, pruning);
  ``.zip``/``.pkg``/``.dmg`` go as they are.
* never notarise twice: ``code_identity`` names the code signature a ticket is filed under (the
  main executable's cdhash, the dmg's, the pkg's TOC hash), read without reading the build;
  ``stapled_for_current_signature`` is the offline ``staple --check``. The pipeline looks both
  up before packaging or hashing anything.
* ``staple_after``: after Accepted, staple the bundle/.dmg/.pkg the user gave; a zip input gets a
  line saying zips cannot be stapled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from uploader.blocking import off_loop
from uploader.bundle_zip import archive_path_for, package_for_submission, remove_archive
from uploader.config import EngineConfig
from uploader.database import Database
from uploader.errors import ConfigError, NotarydError
from uploader.hashing import FileDigest
from uploader.inputs import InputKind, is_bundle, kind_by_name
from uploader.work_dir import ZipLock, check_room

log = logging.getLogger(__name__)

MAX_LOG_BYTES = 8 << 20  # the notary client's cap on a developer log


@dataclass(frozen=True)
class PreparedInput:
    source: Path  # what the user gave
    archive: Path  # what is uploaded
    digest: FileDigest | None  # known when packaging hashed it
    packaged: bool

    def discard(self) -> None:
        """Remove the zip made from a bundle (blocking)."""
        if self.packaged:
            remove_archive(self.archive)


async def prepare(path: Path, kind: InputKind, work_dir: Path, engine: EngineConfig,
                  on_progress: Callable[[int, int], None] | None = None) -> PreparedInput:
    """``kind`` from ``uploader.inputs.input_kind``; ``on_progress(bundle bytes read, bundle
    bytes)`` runs on the event loop."""
    if kind is InputKind.BUNDLE:
        loop = asyncio.get_running_loop()
        report = None
        if on_progress is not None:
            callback = on_progress

            def report(done: int, total: int) -> None:  # called on the packaging thread
                loop.call_soon_threadsafe(callback, done, total)

        try:  # cancelled: the packaging thread stops at its next read (uploader.blocking)
            await asyncio.to_thread(check_room, path, work_dir)
            packaged = await off_loop(
                lambda stop: package_for_submission(path, work_dir, part_size=engine.part_size,
                                                    algorithm=engine.checksum,
                                                    limits=engine.limits, on_progress=report,
                                                    stop=stop),
                what=f"packaging {path}")
        except OSError as error:
            raise _packaging_failed(path, work_dir, error) from None
        return PreparedInput(path, packaged.archive, packaged.digest, True)
    return PreparedInput(path, path, None, False)


@contextlib.asynccontextmanager
async def zip_in_use(path: Path, work_dir: Path) -> AsyncIterator[None]:
    """Hold the zip of bundle ``path`` against ``notaryd state prune`` for the whole run."""
    if not await asyncio.to_thread(is_bundle, path):
        yield
        return
    lock = ZipLock(archive_path_for(path, work_dir))
    acquiring = asyncio.ensure_future(asyncio.to_thread(lock.acquire))
    try:
        await asyncio.shield(acquiring)
    except asyncio.CancelledError:  # the thread may still get it: let go of it then
        acquiring.add_done_callback(lambda _: lock.release())
        raise
    except OSError as error:
        raise _packaging_failed(path, work_dir, error) from None
    try:
        yield
    finally:
        lock.release()


def code_identity(path: Path) -> str | None:
    """The ticket record name of ``path``'s code signature; None for a zip or unsigned input.

    Reads headers and the signature only (never the whole build). Blocking.
    """
    from uploader.staple.identity import StapleInputError, ticket_key_for

    try:
        return ticket_key_for(path).record_name
    except (StapleInputError, OSError):
        return None


def stapled_for_current_signature(path: Path) -> bool:
    """The offline ``notaryd staple --check``: a ticket for the current signature is stapled."""
    from uploader.staple.check import check_staple
    from uploader.staple.identity import StapleInputError

    try:
        return check_staple(path).ok
    except (StapleInputError, OSError):
        return False


def _packaging_failed(path: Path, work_dir: Path, error: OSError) -> ConfigError:
    return ConfigError(
        f"{path}: packaging the bundle failed at {error.filename or work_dir}: "
        f"{error.strerror or error}; check its permissions and the free space in {work_dir} "
        "(NOTARYD_WORK_DIR, by default the state dir)")


@dataclass(frozen=True)
class EarlierVerdict:
    submission_id: str
    log_path: Path | None


async def decided_since(db: Database, sha256: str, since: float) -> EarlierVerdict | None:
    """The verdict another run reached on the same archive while this one waited for it."""
    row = await db.fetchone(
        "SELECT id, log_path FROM submissions WHERE sha256 = ? AND state = 'done'"
        " AND updated_at >= ? ORDER BY updated_at DESC LIMIT 1", (sha256, since))
    if row is None:
        return None
    return EarlierVerdict(str(row["id"]), Path(row["log_path"]) if row["log_path"] else None)


@dataclass(frozen=True)
class StapleNote:
    text: str
    failed: bool = False
    outcome: str = "stapled"  # "stapled", "failed" or "not_stapleable" (a zip)


async def staple_after(source: Path, ticket_url: str, max_wait_seconds: float,
                       session: aiohttp.ClientSession | None = None,
                       log_path: Path | None = None) -> StapleNote:
    """Staple the accepted artifact; never raises for a stapling problem (the verdict stands).

    ``log_path``: the submission's stored developer log; its ``ticketContents`` tell a ticket
    that is still propagating from one that will never exist.
    """
    from uploader.staple import StapleInputError, staple
    from uploader.staple.identity import zip_cannot_be_stapled

    if kind_by_name(source) is InputKind.ZIP:
        return StapleNote(zip_cannot_be_stapled(source), outcome="not_stapleable")
    try:
        ticketed = await asyncio.to_thread(ticketed_records, log_path)
        done = await staple(source, ticket_url, session=session,
                            max_wait_seconds=max_wait_seconds, ticketed=ticketed)
    except StapleInputError as error:
        return StapleNote(str(error), failed=True, outcome="failed")
    except NotarydError as error:
        return StapleNote(f"{source.name}: accepted but not stapled: {error}", failed=True,
                          outcome="failed")
    except OSError as error:  # read-only volume, full disk, permissions
        return StapleNote(f"{source.name}: accepted but not stapled: {error.strerror or error} "
                          f"({error.filename or source}); fix it and run notaryd staple {source}",
                          failed=True, outcome="failed")
    except Exception as error:  # a bug must not cost the user the Accepted verdict
        log.debug("stapling %s failed", source, exc_info=True)
        return StapleNote(f"{source.name}: accepted but not stapled: internal error "
                          f"({type(error).__name__}); run notaryd staple {source} later",
                          failed=True, outcome="failed")
    return StapleNote(done.message)


def ticketed_records(log_path: Path | None) -> tuple[str, ...]:
    """Ticket record names (``2/<digest type>/<cdhash>``) of what a stored developer log lists
    in ``ticketContents`` (blocking); () when unknown."""
    from uploader.notary.logreport import parse_log
    from uploader.preflight.walk import open_regular_file

    if log_path is None:
        return ()
    try:
        handle = open_regular_file(log_path, follow_symlinks=False)
        if handle is None:
            return ()
        with handle:
            document = json.loads(handle.read(MAX_LOG_BYTES))
    except (OSError, ValueError, RecursionError):
        return ()
    if not isinstance(document, dict):
        return ()
    types = {"SHA-1": 1, "SHA-256": 2}
    return tuple(f"2/{types[t.digest_algorithm.upper()]}/{t.cdhash.lower()[:40]}"
                 for t in parse_log(document).tickets
                 if t.cdhash and t.digest_algorithm.upper() in types)
