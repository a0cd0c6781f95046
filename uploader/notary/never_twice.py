"""Never notarise the same build twice.

Before anything reads the build, its code signature (``ends.code_identity``: a few KB of
headers) is looked up: a ticket for it already stapled ends the run at once; an Accepted
submission for it in the state database, confirmed with the service, goes straight to stapling.
After hashing, an Accepted submission of the same SHA-256 (confirmed the same way) does too.
``--force`` skips these lookups (the runner does not ask).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from uploader.artifact import Artifact
from uploader.events import NotaryStageChanged
from uploader.lifecycle import NotaryStage, NotaryStatus
from uploader.notary import ends
from uploader.notary.client import NotaryClient, with_retries
from uploader.notary.ends import StapleNote
from uploader.notary.errors import NotFound
from uploader.notary.model import API_RETRY, NotarizeOutcome, Stage
from uploader.notary.store import SubmissionRecord

log = logging.getLogger(__name__)


class NeverTwice(Stage):
    """The lookups that end a run early: this build, or these bytes, were notarised before."""

    async def by_signature(self, client: NotaryClient, opened: Artifact, target: str,
                           code: str | None) -> NotarizeOutcome | None:
        """Before the build is read: stapled already (the outcome carries its ``staple``
        note), or Accepted before under its code signature ``code``; None: neither."""
        if code is None:
            return None
        path = opened.path
        if await asyncio.to_thread(ends.stapled_for_current_signature, opened):
            return await self._already_stapled(path, target, code)
        earlier = await self._confirmed_accepted(
            client, await self._submissions.newest_accepted(code_identity=code))
        if earlier is None:
            return None
        return self._earlier_outcome(path, target, earlier, f"the same code signature, {code}")

    async def by_sha256(self, client: NotaryClient, sha256: str, path: Path, target: str,
                        code: str | None) -> NotarizeOutcome | None:
        """After hashing: these bytes were Accepted before (recorded under ``code`` too)."""
        earlier = await self._confirmed_accepted(
            client, await self._submissions.newest_accepted(sha256=sha256))
        if earlier is None:
            return None
        if code is not None:
            await self._submissions.set_code_identity(earlier.id, code)
        return self._earlier_outcome(path, target, earlier, "the same SHA-256")

    async def _already_stapled(self, path: Path, target: str, code: str) -> NotarizeOutcome:
        earlier = await self._submissions.newest_accepted(code_identity=code)
        submission_id = earlier.id if earlier is not None else None
        self._emit(NotaryStageChanged(target, NotaryStage.DONE, submission_id, NotaryStatus.ACCEPTED))
        return NotarizeOutcome(
            path, submission_id, NotaryStatus.ACCEPTED,
            Path(earlier.log_path) if earlier is not None and earlier.log_path else None,
            f"{path.name}: already notarised and stapled; nothing was submitted or uploaded "
            "(--force notarises it again)",
            StapleNote(f"{path.name}: the stapled ticket is for its current signature, {code}"))

    def _earlier_outcome(self, path: Path, target: str, earlier: SubmissionRecord,
                         why: str) -> NotarizeOutcome:
        self._emit(NotaryStageChanged(target, NotaryStage.DONE, earlier.id, NotaryStatus.ACCEPTED))
        return NotarizeOutcome(
            path, earlier.id, NotaryStatus.ACCEPTED,
            Path(earlier.log_path) if earlier.log_path else None,
            f"already accepted as submission {earlier.id} ({why}); not submitted again "
            "(--force submits it anyway)")

    async def _confirmed_accepted(self, client: NotaryClient,
                                  earlier: SubmissionRecord | None) -> SubmissionRecord | None:
        """``earlier`` if the notary service, asked once, says it is Accepted; the state
        database alone is not trusted (a row can be stale, or forged by a local user)."""
        if earlier is None:
            return None
        try:
            answer: str | None = (await with_retries(
                lambda: client.status(earlier.id), API_RETRY, self._sleep)).status
        except NotFound:
            answer = None
        if answer == NotaryStatus.ACCEPTED:
            return earlier
        log.warning("the state database says submission %s was accepted, but the notary service "
                    "says %s; not trusting it", earlier.id, answer or "it does not know it")
        await self._submissions.set_notary_status(earlier.id, answer)  # asked once, not again
        return None
