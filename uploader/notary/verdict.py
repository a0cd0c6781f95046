"""A submission's verdict and its log: waiting for Apple's decision, fetching the developer log.

* **Wait**: poll with back-off (10 s growing to a few minutes, 429 backs off hard), network
  errors and 5xx are tolerated for ever; a submission in progress longer than ``stuck_after``
  is reported stuck and still polled. Tokens are re-minted per request, never over 20 minutes.
* **Log**: fetched from the pre-signed URL without the Bearer token, stored beside the state,
  and turned into a readable report.

``Verdicts`` is the pipeline's last stage before stapling (``Notarizer.wait``, ``status`` and
``fetch_log`` are its calls); ``notaryd wait``, ``status`` and ``log`` reach it through them.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

from uploader.errors import NotarydError
from uploader.events import NotaryStageChanged, Retrying
from uploader.lifecycle import NotaryStage, NotaryStatus
from uploader.notary.client import NotaryClient, SubmissionStatus, notary_retry_delay
from uploader.notary.errors import LogUrlExpired, NotaryError, NotFound, UnknownSubmission
from uploader.notary.logreport import parse_log, render_report
from uploader.notary.model import NOTARY_SERVICE, NotarizeOutcome, Stage
from uploader.notary.model import why as _why
from uploader.notary.store import EarlierVerdict
from uploader.retry import Pace, Retrier, RetryPolicy
from uploader.state_dir import write_private

log = logging.getLogger(__name__)

# The log of a fresh verdict can answer 404 for a while: keep asking this long.
LOG_NOT_FOUND_GRACE_SECONDS = 300.0
# A pre-signed log URL can expire between asking for it and fetching it: ask again this often.
LOG_URL_ATTEMPTS = 3


class Verdicts(Stage):
    """The verdict stage of a ``Notarizer``'s runs: wait, then fetch and store the log."""

    async def wait(
        self, submission_id: str, target: str = "", *, submitted_at: float | None = None
    ) -> SubmissionStatus:
        """Poll until the status is anything but IN_PROGRESS; survives any transient error."""
        await self.client()  # a bad key fails here, before the wait starts
        self._emit(NotaryStageChanged(target, NotaryStage.WAITING, submission_id, NotaryStatus.IN_PROGRESS,
                                      submitted_at=submitted_at))
        first = self._config.poll_initial_seconds
        most = max(first, self._config.poll_max_seconds)
        stuck_reported = False
        # Errors back off from the poll interval up to its maximum (a 429's floor above it).
        polling = Retrier(RetryPolicy(initial_delay_seconds=first,
                                      throttled_initial_delay_seconds=first,
                                      max_delay_seconds=most), self._sleep)

        def decide(error: Exception, retry_number: int) -> float:
            if not isinstance(error, NotaryError):
                raise error
            wait = notary_retry_delay(polling, error, retry_number + 1)
            log.debug("status of %s: %s; asking again in %.0f s", submission_id, error, wait)
            self._emit(Retrying(target, NOTARY_SERVICE, _why(error), "next status check", wait))
            return wait

        async def ask() -> SubmissionStatus:
            nonlocal stuck_reported
            status = await self.status(submission_id)
            if await self._submissions.get(submission_id) is not None:
                await self._submissions.set_notary_status(submission_id, status.status)
            started = submitted_at or status.created_at or self._clock()
            if (not status.is_terminal and not stuck_reported
                    and self._clock() - started > self._config.stuck_after_seconds):
                stuck_reported = True
                hours = (self._clock() - started) / 3600
                self._emit(NotaryStageChanged(
                    target, NotaryStage.WAITING, submission_id, NotaryStatus.IN_PROGRESS, submitted_at=started,
                    detail=f"stuck: in progress for {hours:.1f} h; Apple sometimes holds a "
                           "submission for in-depth analysis; still polling"))
            return status

        # Between answers: the poll interval, growing 1.5x to its maximum, 80-100 % of it.
        return await polling.poll(ask, lambda status: status.is_terminal,
                                  Pace(first, most, growth=1.5, spread=0.2), decide)

    async def finish(
        self, client: NotaryClient, submission_id: str, status: str, target: str, path: Path
    ) -> NotarizeOutcome:
        self._emit(NotaryStageChanged(target, NotaryStage.FETCHING_LOG, submission_id, status))
        log_path, report = await self.fetch_log(submission_id, target)
        if await self._submissions.get(submission_id) is not None:
            await self._submissions.mark_done(submission_id, status, str(log_path))
        self._emit(NotaryStageChanged(target, NotaryStage.DONE, submission_id, status))
        return NotarizeOutcome(path, submission_id, status, log_path, report)

    async def of_the_run_waited_for(
        self, client: NotaryClient, decided: EarlierVerdict, target: str, path: Path
    ) -> NotarizeOutcome:
        """The run this one waited for reached a verdict: report it, submit nothing."""
        record = await self._submissions.get(decided.submission_id)
        if record is not None and record.notary_status and decided.log_path is not None:
            try:
                text = await asyncio.to_thread(decided.log_path.read_text, encoding="utf-8")
                report = render_report(parse_log(json.loads(text)))
            except (OSError, ValueError):
                pass  # gone or damaged since: fetched again below
            else:
                self._emit(NotaryStageChanged(target, NotaryStage.DONE, record.id,
                                              record.notary_status))
                return NotarizeOutcome(path, record.id, record.notary_status, decided.log_path,
                                       report)
        status = await self.status(decided.submission_id)
        return await self.finish(client, decided.submission_id, status.status, target, path)

    async def status(self, submission_id: str) -> SubmissionStatus:
        """The service's status of a submission; ``UnknownSubmission`` for an id it does not know."""
        client = await self.client()
        try:
            return await client.status(submission_id)
        except NotFound:
            raise UnknownSubmission(submission_id, endpoint="status") from None

    async def _log_not_there(self, submission_id: str) -> None:
        """A 404 for the log of a submission this state dir did not make: say why at once."""
        if await self._submissions.get(submission_id) is not None:
            return  # ours, just decided: the log may take a moment to appear
        status = await self.status(submission_id)
        if not status.is_terminal:
            raise NotarydError(f"submission {submission_id} is still {status.status}; its log "
                               f"comes with the verdict: notaryd wait {submission_id}")

    async def fetch_log(self, submission_id: str, target: str = "") -> tuple[Path, str]:
        """Download the log, store it under ``<state dir>/logs/``, return it and its report."""
        client = await self.client()

        async def download() -> dict[str, Any]:
            url = await client.log_url(submission_id)
            return await client.download_log(url)

        started = self._clock()
        expired_urls = 0

        async def decide(error: Exception, retry_number: int) -> float:
            nonlocal expired_urls
            if isinstance(error, LogUrlExpired) and expired_urls < LOG_URL_ATTEMPTS:
                expired_urls += 1
                return 0.0  # ask for a fresh URL at once
            if isinstance(error, NotFound) and retry_number == 0:
                await self._log_not_there(submission_id)
            if isinstance(error, NotFound) and self._clock() - started < LOG_NOT_FOUND_GRACE_SECONDS:
                # Right after a verdict the log may not be there yet.
                log.info("log of %s: not there yet (404); asking again", submission_id)
                return self._retrier.delay(retry_number)
            if not isinstance(error, NotaryError):
                raise error
            delay = notary_retry_delay(self._retrier, error, retry_number)
            self._emit(Retrying(target, NOTARY_SERVICE, _why(error), "next log download", delay))
            return delay

        document = await self._retrier.run(download, decide)
        log_dir = self._config.state_dir / "logs"
        log_path = log_dir / f"{submission_id.lower()}.json"
        text = json.dumps(document, indent=2, sort_keys=True)
        await asyncio.to_thread(_write_text, log_path, text)
        return log_path, render_report(parse_log(document))


def _write_text(path: Path, text: str) -> None:
    write_private(path, text.encode("utf-8"))  # 0600 in a 0700 logs/: see uploader.state_dir
