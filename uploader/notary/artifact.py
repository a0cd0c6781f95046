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
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from uploader.bundle_zip import package_for_submission, remove_archive
from uploader.config import EngineConfig
from uploader.database import Database
from uploader.errors import ConfigError, NotarydError
from uploader.hashing import FileDigest
from uploader.inputs import InputKind, kind_by_name
from uploader.lifecycle import NotaryStatus

log = logging.getLogger(__name__)

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


async def prepare(path: Path, kind: InputKind, state_dir: Path, engine: EngineConfig,
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

        try:
            packaged = await asyncio.to_thread(
                package_for_submission, path, state_dir, part_size=engine.part_size,
                limits=engine.limits, on_progress=report)
        except OSError as error:
            where = error.filename or state_dir
            raise ConfigError(
                f"{path}: packaging the bundle failed at {where}: {error.strerror or error}; "
                f"check its permissions and the free space in {state_dir} (NOTARYD_STATE_DIR)"
            ) from None
        return PreparedInput(path, packaged.archive, packaged.digest, True)
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
                       session: aiohttp.ClientSession | None = None) -> StapleNote:
    """Staple the accepted artifact; never raises for a stapling problem (the verdict stands)."""
    from uploader.staple import StapleInputError, staple
    from uploader.staple.identity import zip_cannot_be_stapled

    if kind_by_name(source) is InputKind.ZIP:
        return StapleNote(zip_cannot_be_stapled(source), outcome="not_stapleable")
    try:
        done = await staple(source, ticket_url, session=session, max_wait_seconds=max_wait_seconds)
    except StapleInputError as error:
        return StapleNote(str(error), failed=True, outcome="failed")
    except NotarydError as error:
        return StapleNote(f"{source.name}: accepted but not stapled: {error}", failed=True,
                          outcome="failed")
    except OSError as error:  # read-only volume, full disk, permissions
        return StapleNote(f"{source.name}: accepted but not stapled: {error.strerror or error} "
                          f"({error.filename or source}); fix it and run notaryd staple {source}",
                          failed=True, outcome="failed")
    return StapleNote(done.message)
