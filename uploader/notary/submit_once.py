"""Submit at most once per archive: intents, and the orphans of runs that died mid-POST.

Before ``POST /submissions`` an *intent* row is written; the answer (id, bucket, object,
temporary credentials) is committed right after. A re-run finds the active submission by SHA-256
and path and continues it. If the process died in the few milliseconds between the POST and the
commit, the submission's credentials are lost with it: nothing can ever be uploaded to it. The
re-run then looks the orphan up in the service's history (same name, created after the intent),
records it as abandoned so it is accounted for, and creates one new submission. No other path
creates a second submission (the upload stage creates a new one only after recording the old one
abandoned: its credentials expired). The store's side of the protocol: ``uploader.notary.store``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from uploader.events import CredentialsIssued, NotaryStageChanged, Retrying
from uploader.hashing import FileDigest
from uploader.lifecycle import NotaryStage, NotaryStatus, SubmissionState
from uploader.notary.client import NewSubmission, NotaryClient, notary_retry_delay, with_retries
from uploader.notary.errors import NotaryError, RateLimited
from uploader.notary.model import API_RETRY, NOTARY_SERVICE, Stage
from uploader.notary.model import why as _why
from uploader.notary.store import SubmissionRecord

log = logging.getLogger(__name__)


class Submitter(Stage):
    """The submit stage of a ``Notarizer``'s runs: the one place a submission is created."""

    async def submission_for(
        self, client: NotaryClient, digest: FileDigest, name: str, path: Path, webhook: str | None
    ) -> SubmissionRecord:
        active = await self._submissions.find_active(digest.sha256, str(path))
        if active is not None:
            if active.state is SubmissionState.UPLOADED or self._clock() < active.credentials_expire_at:
                return active
            await self._submissions.mark_abandoned(
                active.id, "the upload credentials expired before the upload finished")
        await self._account_for_orphans(client, digest.sha256, str(path))
        return await self.create(client, digest, name, path, webhook)

    async def _account_for_orphans(self, client: NotaryClient, sha256: str, target: str) -> None:
        """Find submissions whose POST answer died with an earlier process (see module doc)."""
        intents = await self._submissions.dangling_intents(sha256)
        if not intents:
            return

        def retrying(error: NotaryError, delay: float) -> None:
            self._emit(Retrying(target, NOTARY_SERVICE, _why(error),
                                "next look for a lost submission", delay))

        history = await with_retries(client.history, API_RETRY, self._sleep, on_retry=retrying)
        for intent in intents:
            for item in history:
                created = item.created_at
                if (item.name == intent.name and created is not None
                        and created >= intent.started_at - 120
                        and await self._submissions.get(item.id) is None):
                    log.warning("submission %s was created by a run that died before recording "
                                "it; its upload credentials are lost, so it is left unused",
                                item.id)
                    await self._submissions.attach_intent(intent.id, item.id)
                    break
            else:
                await self._submissions.discard_intent(intent.id)

    async def create(
        self, client: NotaryClient, digest: FileDigest, name: str, path: Path, webhook: str | None
    ) -> SubmissionRecord:
        target = str(path)
        self._emit(NotaryStageChanged(target, NotaryStage.SUBMITTING))
        intent = 0
        issued_at = 0.0

        async def submit() -> NewSubmission:
            nonlocal intent, issued_at
            intent = await self._submissions.record_intent(name, digest.sha256, target)
            issued_at = self._clock()
            return await client.submit(name, digest.sha256, webhook)

        async def decide(error: Exception, retry_number: int) -> float:
            if not isinstance(error, NotaryError):
                raise error
            if not error.transient or isinstance(error, RateLimited):
                await self._submissions.discard_intent(intent)  # surely created nothing
            else:
                # The POST may have landed although its answer did not: account for it
                # (it cannot be used without its credentials) before trying again.
                await self._account_for_orphans(client, digest.sha256, target)
            delay = notary_retry_delay(self._retrier, error, retry_number)
            self._emit(Retrying(target, NOTARY_SERVICE, _why(error), "next submit attempt", delay))
            return delay

        created = await self._retrier.run(submit, decide)
        record = await self._submissions.save_submission(
            created, name=name, sha256=digest.sha256, path=target, issued_at=issued_at,
            webhook=webhook, intent_id=intent,
        )
        self._emit(NotaryStageChanged(target, NotaryStage.SUBMITTING, record.id, NotaryStatus.IN_PROGRESS,
                                      submitted_at=record.created_at))
        self._emit(CredentialsIssued(target, record.credentials_expire_at))
        return record
