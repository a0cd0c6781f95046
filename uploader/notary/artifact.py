"""The ends of a notarisation: what goes in (a bundle is zipped), what comes out (stapled).

* ``prepare``: a ``.app`` folder is packaged like ``ditto -c -k --keepParent`` into the state
  dir (``uploader.bundle_zip``, hashing as it writes); ``.zip``/``.pkg``/``.dmg`` go as they are.
* ``accepted_before``: never wait twice: the newest local submission of the same SHA-256 that the
  notary service Accepted, so a re-run reports its verdict instead of submitting again.
* ``staple_after``: after Accepted, staple the bundle/.dmg/.pkg the user gave; a zip input gets a
  line saying zips cannot be stapled.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from uploader.blocking import off_loop
from uploader.bundle_zip import is_bundle, package_for_submission, remove_archive
from uploader.config import EngineConfig
from uploader.database import Database
from uploader.errors import ConfigError, NotarydError
from uploader.hashing import FileDigest
from uploader.lifecycle import NotaryStatus

log = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".zip", ".pkg", ".dmg")
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


async def prepare(path: Path, state_dir: Path, engine: EngineConfig,
                  on_progress: Callable[[int, int], None] | None = None) -> PreparedInput:
    """``on_progress(bundle bytes read, bundle bytes)`` runs on the event loop."""
    if await asyncio.to_thread(is_bundle, path):
        loop = asyncio.get_running_loop()
        report = None
        if on_progress is not None:
            callback = on_progress

            def report(done: int, total: int) -> None:  # called on the packaging thread
                loop.call_soon_threadsafe(callback, done, total)

        try:  # cancelled: the packaging thread stops at its next read (uploader.blocking)
            packaged = await off_loop(
                lambda stop: package_for_submission(path, state_dir, part_size=engine.part_size,
                                                    limits=engine.limits, on_progress=report,
                                                    stop=stop),
                what=f"packaging {path}")
        except OSError as error:
            where = error.filename or state_dir
            raise ConfigError(
                f"{path}: packaging the bundle failed at {where}: {error.strerror or error}; "
                f"check its permissions and the free space in {state_dir} (NOTARYD_STATE_DIR)"
            ) from None
        return PreparedInput(path, packaged.archive, packaged.digest, True)
    if not await asyncio.to_thread(path.is_file):
        raise ConfigError(f"{path}: no such file; give a .app bundle or a .zip, .pkg or .dmg")
    return PreparedInput(path, path, None, False)


@dataclass(frozen=True)
class EarlierVerdict:
    submission_id: str
    log_path: Path | None


async def accepted_before(db: Database, sha256: str) -> EarlierVerdict | None:
    row = await db.fetchone(
        "SELECT id, log_path FROM submissions WHERE sha256 = ? AND notary_status = ?"
        " ORDER BY updated_at DESC LIMIT 1", (sha256, NotaryStatus.ACCEPTED))
    if row is None:
        return None
    return EarlierVerdict(str(row["id"]), Path(row["log_path"]) if row["log_path"] else None)


@dataclass(frozen=True)
class StapleNote:
    text: str
    failed: bool = False


async def staple_after(source: Path, ticket_url: str, max_wait_seconds: float,
                       session: aiohttp.ClientSession | None = None,
                       log_path: Path | None = None) -> StapleNote:
    """Staple the accepted artifact; never raises for a stapling problem (the verdict stands).

    ``log_path``: the submission's stored developer log; its ``ticketContents`` tell a ticket
    that is still propagating from one that will never exist.
    """
    from uploader.staple import StapleInputError, staple

    if source.suffix.lower() == ".zip":
        return StapleNote(f"{source.name}: a zip cannot be stapled; staple the .app it was made "
                          "from (notaryd staple Game.app) and zip it again")
    try:
        ticketed = await asyncio.to_thread(ticketed_records, log_path)
        done = await staple(source, ticket_url, session=session,
                            max_wait_seconds=max_wait_seconds, ticketed=ticketed)
    except StapleInputError as error:
        return StapleNote(str(error), failed=True)
    except NotarydError as error:
        return StapleNote(f"{source.name}: accepted but not stapled: {error}", failed=True)
    except OSError as error:  # read-only volume, full disk, permissions
        return StapleNote(f"{source.name}: accepted but not stapled: {error.strerror or error} "
                          f"({error.filename or source}); fix it and run notaryd staple {source}",
                          failed=True)
    except Exception as error:  # a bug must not cost the user the Accepted verdict
        log.debug("stapling %s failed", source, exc_info=True)
        return StapleNote(f"{source.name}: accepted but not stapled: internal error "
                          f"({type(error).__name__}); run notaryd staple {source} later",
                          failed=True)
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
