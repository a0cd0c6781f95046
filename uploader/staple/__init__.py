"""Stapling on any OS: find the artifact's ticket key, look the ticket up, write it atomically.

``identity`` (which signature names the artifact), ``lookup`` (the CloudKit ticket lookup),
``tickets`` (where the ticket lives in a .app, .pkg, .dmg), ``check`` (offline ``--check``).
Which of them applies to an input is its kind's row in ``uploader.artifact.KINDS``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp

from uploader.blocking import off_loop
from uploader.constants import DEFAULT_TICKET_URL
from uploader.staple.identity import StapleInputError, TicketKey
from uploader.staple.lookup import TicketLookupError, lookup_ticket

if TYPE_CHECKING:
    from uploader.artifact import Artifact

__all__ = ["DEFAULT_TICKET_URL", "StapleInputError", "StapledArtifact", "TicketLookupError",
           "staple"]

READ_SECONDS = 300.0  # reading an artifact's signature: a few MiB at most
WRITE_SECONDS = 3600.0  # copying a multi-GB .dmg beside itself, on a slow disk


@dataclass(frozen=True)
class StapledArtifact:
    path: Path
    key: TicketKey
    ticket_bytes: int
    target: Path | None = None  # the file stapled when ``path`` is a symlink to it

    @property
    def message(self) -> str:
        into = f" (into {self.target}, which it links to)" if self.target is not None else ""
        return (f"{self.path.name}: stapled the ticket for {self.key.record_name} "
                f"({self.ticket_bytes} bytes){into}")


async def staple(
    target: Path | Artifact,
    ticket_url: str = DEFAULT_TICKET_URL,
    *,
    session: aiohttp.ClientSession | None = None,
    max_wait_seconds: float = 1800.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    on_retry: Callable[[str, float], None] | None = None,
    ticketed: Collection[str] = (),
) -> StapledArtifact:
    """Look the artifact's ticket up and write it in (``target``: opened by the caller, or a
    path, opened here).

    ``ticketed``: the record names (``2/<digest type>/<cdhash>``) of what the submission's
    developer log lists in ``ticketContents``. When it lists signatures of this digest type but
    not this artifact's, no ticket will ever exist for it (it was changed or signed again after
    submission): that is said at once instead of waiting for propagation.
    """
    from uploader.artifact import for_stapling

    path = target if isinstance(target, Path) else target.path
    # Every file step on a thread of its own, bounded, stopped with the caller (uploader.blocking)
    artifact = await off_loop(lambda _: for_stapling(target), what=f"looking at {path}",
                              timeout_seconds=READ_SECONDS)
    key = await off_loop(lambda _: artifact.ticket_key(),
                         what=f"reading the signature of {path}", timeout_seconds=READ_SECONDS)
    prefix = f"2/{key.digest_type}/"
    listed = sorted({name.lower() for name in ticketed if name.startswith(prefix)})
    if listed and key.record_name not in listed:
        raise TicketLookupError(
            f"{path.name}: the notary log lists no ticket for its signature (cdhash "
            f"{key.cdhash.hex()}); it lists {', '.join(n.rsplit('/', 1)[1] for n in listed)}. "
            f"The {artifact.kind.name} was changed or signed again after it was submitted, so no ticket will "
            "come: notarise it again")
    ticket = await lookup_ticket(ticket_url, key, session=session,
                                 max_wait_seconds=max_wait_seconds, sleep=sleep,
                                 on_retry=on_retry)
    await off_loop(lambda stop: artifact.write_ticket(ticket, stop), what=f"stapling {path}",
                   timeout_seconds=WRITE_SECONDS)
    linked = await off_loop(lambda _: _link_target(path, artifact), what=f"looking at {path}",
                            timeout_seconds=READ_SECONDS)
    return StapledArtifact(path, key, len(ticket), linked)


def _link_target(path: Path, artifact: Artifact) -> Path | None:
    if artifact.kind.folder or not path.is_symlink():
        return None
    return Path(os.path.realpath(path))
