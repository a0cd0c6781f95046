"""The ends of a notarisation: what goes in (a bundle is zipped), what comes out (stapled).

The input is an ``uploader.artifact.Artifact``, opened once at the edge; what each step does
with it is its kind's row (``KINDS``):

* ``prepare``: a kind that is ``zipped`` (a ``.app`` folder) is packaged like ``ditto -c -k
  --keepParent`` into the work dir (``uploader.bundle_zip``, hashing as it writes;
  ``uploader.work_dir``: room, locks, pruning); ``.zip``/``.pkg``/``.dmg`` go as they are.
* never notarise twice: ``code_identity`` names the code signature a ticket is filed under (the
  kind's ``ticket_key``: the main executable's cdhash, the dmg's, the pkg's TOC hash), read
  without reading the build;
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
from typing import TYPE_CHECKING

import aiohttp

from uploader.blocking import off_loop
from uploader.bundle_zip import archive_path_for, package_for_submission, remove_archive
from uploader.config import EngineConfig
from uploader.errors import ConfigError, NotarydError
from uploader.hashing import FileDigest
from uploader.work_dir import ZipLock, check_room

if TYPE_CHECKING:
    from uploader.artifact import Artifact

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


async def prepare(artifact: Artifact, work_dir: Path, engine: EngineConfig,
                  on_progress: Callable[[int, int], None] | None = None) -> PreparedInput:
    """What is uploaded for ``artifact``; ``on_progress(bundle bytes read, bundle bytes)`` runs
    on the event loop."""
    path = artifact.path
    if artifact.kind.zipped:
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
async def zip_in_use(artifact: Artifact, work_dir: Path) -> AsyncIterator[None]:
    """Hold the zip made of ``artifact`` against ``notaryd state prune`` for the whole run."""
    if not artifact.kind.zipped:
        yield
        return
    path = artifact.path
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


def code_identity(artifact: Artifact) -> str | None:
    """The ticket record name of ``artifact``'s code signature; None for a zip or unsigned input.

    Reads headers and the signature only (never the whole build). Blocking.
    """
    from uploader.staple.files import StapleInputError

    if artifact.kind.ticket_key is None:
        return None
    try:
        return artifact.ticket_key().record_name
    except (StapleInputError, OSError):
        return None


def stapled_for_current_signature(artifact: Artifact) -> bool:
    """The offline ``notaryd staple --check``: a ticket for the current signature is stapled."""
    from uploader.staple.check import check_staple
    from uploader.staple.files import StapleInputError

    if not artifact.kind.stapled:
        return False
    try:
        return check_staple(artifact).ok
    except (StapleInputError, OSError):
        return False


def _packaging_failed(path: Path, work_dir: Path, error: OSError) -> ConfigError:
    return ConfigError(
        f"{path}: packaging the bundle failed at {error.filename or work_dir}: "
        f"{error.strerror or error}; check its permissions and the free space in {work_dir} "
        "(NOTARYD_WORK_DIR, by default the state dir)")


@dataclass(frozen=True)
class StapleNote:
    text: str
    failed: bool = False
    outcome: str = "stapled"  # "stapled", "failed" or "not_stapleable" (a zip)


async def staple_after(artifact: Artifact, ticket_url: str, max_wait_seconds: float,
                       session: aiohttp.ClientSession | None = None,
                       log_path: Path | None = None) -> StapleNote:
    """Staple the accepted artifact; never raises for a stapling problem (the verdict stands).

    ``log_path``: the submission's stored developer log; its ``ticketContents`` tell a ticket
    that is still propagating from one that will never exist.
    """
    from uploader.staple import StapleInputError, staple

    source = artifact.path
    if not artifact.kind.stapled:
        return StapleNote(artifact.kind.why_not_stapled(source), outcome="not_stapleable")
    try:
        ticketed = await asyncio.to_thread(ticketed_records, log_path)
        done = await staple(artifact, ticket_url, session=session,
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
