"""A notarisation from archive to verdict: preflight, hash, submit, upload, wait, log.

Theory of operation
-------------------
Every step is resumable, because every fact is in SQLite before the next step relies on it:

* **Never twice.** Before anything reads the build, its code signature (``artifact.code_identity``:
  a few KB of headers) is looked up: a ticket for it already stapled ends the run at once; an
  Accepted submission for it in the state database, confirmed with the service, goes straight
  to stapling. After hashing, an Accepted submission of the same SHA-256 (confirmed the same
  way) does too. ``--force`` skips these lookups.
* **Hash** once. The SHA-256 and part checksums are stored with the upload, so a re-run of the
  same, unchanged file (same size, mtime, inode *and ctime*, which every write changes and no
  user can set back) skips the 20 GB read.
* **Submit** at most once per archive. Before ``POST /submissions`` an *intent* row is written;
  the answer (id, bucket, object, temporary credentials) is committed right after. A re-run
  finds the active submission by SHA-256 and path and continues it. If the process died in the
  few milliseconds between the POST and the commit, the submission's credentials are lost with
  it: nothing can ever be uploaded to it. The re-run then looks the orphan up in the service's
  history (same name, created after the intent), records it as abandoned so it is accounted
  for, and creates one new submission. No other path creates a second submission.
* **Upload** with the multipart engine. The 12-hour credentials cannot be renewed: if S3 says
  ExpiredToken, or the measured rate says the rest cannot be sent before they expire, the
  submission is recorded as abandoned and a new one is created for the same archive.
* **Wait**: poll with back-off (10 s growing to a few minutes, 429 backs off hard), network
  errors and 5xx are tolerated for ever; a submission in progress longer than ``stuck_after``
  is reported stuck and still polled. Tokens are re-minted per request, never over 20 minutes.
* **Log**: fetched from the pre-signed URL without the Bearer token, stored beside the state,
  and turned into a readable report.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from uploader.config import EngineConfig
from uploader.constants import STUCK_AFTER_SECONDS
from uploader.database import Database
from uploader.engine import MultipartUploader
from uploader.errors import CredentialsExpiredError, NotarydError
from uploader.events import (
    CredentialsIssued,
    Emitter,
    HashProgress,
    Hook,
    NotaryStageChanged,
    Notice,
    Retrying,
    UploadStateChanged,
)
from uploader.hashing import FileDigest, hash_file
from uploader.input_lock import input_lock
from uploader.inputs import InputKind, input_kind
from uploader.keytext import KeySource
from uploader.lifecycle import NotaryStage, NotaryStatus, SubmissionState, UploadState
from uploader.notary import artifact
from uploader.notary.artifact import StapleNote
from uploader.notary.auth import TokenSource, load_api_key
from uploader.notary.client import (
    NewSubmission,
    NotaryClient,
    SubmissionStatus,
    notary_retry_delay,
    with_retries,
)
from uploader.notary.errors import (
    LogUrlExpired,
    NetworkError,
    NotaryError,
    NotFound,
    RateLimited,
    UnknownSubmission,
)
from uploader.notary.logreport import parse_log, render_report
from uploader.notary.store import SubmissionRecord, SubmissionStore
from uploader.planning import plan_upload
from uploader.progress import Progress
from uploader.retry import Retrier, RetryPolicy
from uploader.source_file import FileIdentity
from uploader.staple.lookup import DEFAULT_TICKET_URL
from uploader.state_dir import write_private
from uploader.throttle import Throttle
from uploader.upload_state import UploadStore

log = logging.getLogger(__name__)

# Re-create the submission when the rest of the upload would finish this close to expiry.
CREDENTIAL_SAFETY_SECONDS = 600.0
# How often the upload's projected finish is compared with the credentials' expiry.
EXPIRY_CHECK_SECONDS = 30.0
# The projection's rate: measured over this window, trusted after this much history.
PROJECTION_WINDOW_SECONDS = 120.0
PROJECTION_MIN_HISTORY_SECONDS = 10.0
# Calls whose failure should not end a notarisation: retry transient errors for this long.
API_RETRY = RetryPolicy(initial_delay_seconds=2.0, max_delay_seconds=120.0)
# The log of a fresh verdict can answer 404 for a while: keep asking this long.
LOG_NOT_FOUND_GRACE_SECONDS = 300.0
# A pre-signed log URL can expire between asking for it and fetching it: ask again this often.
LOG_URL_ATTEMPTS = 3
NOTARY_SERVICE = "the notary service"  # what a Retrying event waits for


@dataclass(frozen=True)
class NotaryConfig:
    api_url: str
    key_path: KeySource  # a .p8 file, or a key held in memory (environment, keychain)
    key_id: str
    issuer_id: str
    engine: EngineConfig
    state_dir: Path
    poll_initial_seconds: float = 10.0
    poll_max_seconds: float = 180.0
    stuck_after_seconds: float = STUCK_AFTER_SECONDS
    ticket_url: str = DEFAULT_TICKET_URL
    staple_max_wait_seconds: float = 1800.0
    work_dir: Path | None = None  # zips made from bundles (NOTARYD_WORK_DIR); None: state_dir

    @property
    def work_dir_in_effect(self) -> Path:
        return self.work_dir or self.state_dir


@dataclass(frozen=True)
class NotarizeRequest:
    path: Path
    name: str | None = None
    webhook: str | None = None
    skip_preflight: bool = False
    wait: bool = True
    staple: bool = True  # after Accepted, for a .app, .dmg or .pkg input
    force: bool = False  # submit even if this archive was Accepted before
    keep_archive: bool = False  # keep the zip made from a bundle


@dataclass(frozen=True)
class NotarizeOutcome:
    path: Path
    submission_id: str | None
    status: str  # a final NotaryStatus, IN_PROGRESS (with wait=False), or one Apple added
    log_path: Path | None
    report: str
    staple: StapleNote | None = None

    @property
    def accepted(self) -> bool:
        return self.status == NotaryStatus.ACCEPTED


class PreflightFailed(NotarydError):
    """The archive has signing problems the notary service would reject; nothing was uploaded."""

    def __init__(self, path: Path, report: str) -> None:
        super().__init__(
            f"{path}: preflight found problems the notary service rejects; fix them and rebuild, "
            "or pass --skip-preflight to submit anyway"
        )
        self.report = report


class _CredentialsWillExpire(Exception):
    pass


class Notarizer:
    """Runs notarisations. Safe to use for several archives at once on one event loop."""

    def __init__(
        self,
        db: Database,
        config: NotaryConfig,
        *,
        hooks: Iterable[Hook] = (),
        part_slots: asyncio.Semaphore | None = None,
        throttle: Throttle | None = None,
        session: aiohttp.ClientSession | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._config = config
        self._hooks = list(hooks)
        self._emit = Emitter(self._hooks)
        self._part_slots = part_slots
        self._throttle = throttle
        self._session = session
        self._sleep = sleep
        self._clock = clock
        self._retrier = Retrier(API_RETRY, sleep)
        self._submissions = SubmissionStore(db, clock=clock)
        self._uploads = UploadStore(db)
        self._client: NotaryClient | None = None

    def __repr__(self) -> str:
        return f"<Notarizer {self._config.api_url} key_id={self._config.key_id!r}>"

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def client(self) -> NotaryClient:
        """The API client, created on first use (reading the key file off the event loop)."""
        if self._client is None:
            key = await asyncio.to_thread(
                load_api_key, self._config.key_path,
                key_id=self._config.key_id, issuer_id=self._config.issuer_id,
            )
            self._client = NotaryClient(
                self._config.api_url, TokenSource(key, clock=self._clock), self._session,
                hooks=self._hooks, clock=self._clock,
            )
        return self._client

    # ------------------------------------------------------------------ the whole run

    async def run(self, request: NotarizeRequest) -> NotarizeOutcome:
        path = Path(await asyncio.to_thread(os.path.abspath, request.path))
        target = str(path)
        kind = await asyncio.to_thread(input_kind, path)  # refused before a byte is read
        client = await self.client()  # fail fast on a bad key, before reading 20 GB

        waited_since: float | None = None

        def busy(holder: int | None) -> None:  # at once, then every minute of the wait
            nonlocal waited_since
            now = self._clock()
            if waited_since is None:
                waited_since = now
            who = f"another notaryd (pid {holder})" if holder else "another notaryd"
            waited = f" ({now - waited_since:.0f} s so far)" if now > waited_since else ""
            self._emit(Notice(target, f"{who} is notarising this build; waiting for it{waited}"))

        async with input_lock(self._config.state_dir, path, on_busy=busy):
            return await self._run_locked(client, request, path, kind, target, waited_since)

    async def _run_locked(self, client: NotaryClient, request: NotarizeRequest, path: Path,
                          kind: InputKind, target: str,
                          waited_since: float | None) -> NotarizeOutcome:
        # Never notarise the same build twice: asked before anything reads the build.
        code = await asyncio.to_thread(artifact.code_identity, path)
        if code is not None and not request.force:
            if await asyncio.to_thread(artifact.stapled_for_current_signature, path):
                return await self._already_stapled(path, target, code)
            earlier = await self._confirmed_accepted(
                client, await self._submissions.newest_accepted(code_identity=code))
            if earlier is not None:
                return await self._staple(request, self._earlier_outcome(
                    path, target, earlier, f"the same code signature, {code}"))
        if not request.skip_preflight:
            await self._preflight(path, target)
        async with artifact.zip_in_use(path, self._config.work_dir_in_effect):
            prepared = await self._prepare(path, kind, target)
            try:
                outcome = await self._notarize(client, request, prepared, target, code,
                                              waited_since)
            except Exception:
                # A failed run leaves no zip behind; an interrupted one keeps it to resume.
                if not request.keep_archive:
                    await asyncio.to_thread(prepared.discard)
                raise
            if not request.keep_archive:
                await asyncio.to_thread(prepared.discard)
        return await self._staple(request, outcome)

    async def _staple(self, request: NotarizeRequest, outcome: NotarizeOutcome) -> NotarizeOutcome:
        if not (outcome.accepted and request.staple):
            return outcome
        note = await artifact.staple_after(outcome.path, self._config.ticket_url,
                                           self._config.staple_max_wait_seconds, self._session,
                                           log_path=outcome.log_path)
        return dataclasses.replace(outcome, staple=note)

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

    async def _prepare(self, path: Path, kind: InputKind, target: str) -> artifact.PreparedInput:
        packaging = kind is InputKind.BUNDLE
        self._emit(NotaryStageChanged(target, NotaryStage.HASHING,
                                      detail="packaging the bundle" if packaging else ""))

        def progress(done: int, total: int) -> None:  # packaging a bundle hashes as it zips
            self._emit(HashProgress(target, done, total, packaging=packaging))

        return await artifact.prepare(path, kind, self._config.work_dir_in_effect,
                                      self._config.engine,
                                      progress)

    async def _notarize(self, client: NotaryClient, request: NotarizeRequest,
                        prepared: artifact.PreparedInput, target: str,
                        code: str | None,
                        waited_since: float | None = None) -> NotarizeOutcome:
        path, archive = prepared.source, prepared.archive
        digest = prepared.digest or await self._digest(archive, target)
        if waited_since is not None and (decided := await artifact.decided_since(
                self._db, digest.sha256, waited_since)) is not None:
            return await self._verdict_of_the_run_waited_for(client, decided, target, path)
        if code is not None and code != await asyncio.to_thread(artifact.code_identity, path):
            code = None  # signed again while it was read: vouch for neither signature
        if not request.force and (earlier := await self._confirmed_accepted(
                client, await self._submissions.newest_accepted(sha256=digest.sha256))) is not None:
            if code is not None:
                await self._submissions.set_code_identity(earlier.id, code)
            return self._earlier_outcome(path, target, earlier, "the same SHA-256")
        name = request.name or (f"{path.stem}.zip" if prepared.packaged else archive.name)
        submission = await self._submission_for(client, digest, name, archive, request.webhook)
        if (submission.state is not SubmissionState.UPLOADED
                and submission.notary_status in (None, NotaryStatus.IN_PROGRESS)):
            submission = await self._upload(client, digest, submission, name, archive,
                                            request.webhook)
        if not request.wait:
            return NotarizeOutcome(path, submission.id, submission.notary_status or NotaryStatus.IN_PROGRESS,
                                   None, "")
        status = await self.wait(submission.id, target, submitted_at=submission.created_at)
        outcome = await self._finish(client, submission.id, status.status, target, path)
        if outcome.accepted and code is not None:
            await self._submissions.set_code_identity(submission.id, code)
        return outcome

    async def _verdict_of_the_run_waited_for(
        self, client: NotaryClient, decided: artifact.EarlierVerdict, target: str, path: Path
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
        return await self._finish(client, decided.submission_id, status.status, target, path)

    async def _preflight(self, path: Path, target: str) -> None:
        from uploader.preflight import run_preflight

        self._emit(NotaryStageChanged(target, NotaryStage.PREFLIGHT))
        report = await asyncio.to_thread(run_preflight, path)
        if report.has_errors:
            raise PreflightFailed(path, report.render_text())

    async def _digest(self, path: Path, target: str) -> FileDigest:
        identity = await asyncio.to_thread(FileIdentity.of, path)
        plan = plan_upload(identity.size, self._config.engine.part_size, self._config.engine.limits)
        known = await self._uploads.find_digest(identity, plan.part_size)
        if known is not None:
            return known
        self._emit(NotaryStageChanged(target, NotaryStage.HASHING))
        self._emit(UploadStateChanged(target, UploadState.HASHING, identity.size, 0))

        def progress(done: int) -> None:
            self._emit(HashProgress(target, done, identity.size))

        return await hash_file(path, plan, self._config.engine.checksum, on_progress=progress)

    # ------------------------------------------------------------------ submissions

    async def _submission_for(
        self, client: NotaryClient, digest: FileDigest, name: str, path: Path, webhook: str | None
    ) -> SubmissionRecord:
        active = await self._submissions.find_active(digest.sha256, str(path))
        if active is not None:
            if active.state is SubmissionState.UPLOADED or self._clock() < active.credentials_expire_at:
                return active
            await self._submissions.mark_abandoned(
                active.id, "the upload credentials expired before the upload finished")
        await self._account_for_orphans(client, digest.sha256, str(path))
        return await self._create(client, digest, name, path, webhook)

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

    async def _create(
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

    # ------------------------------------------------------------------ upload

    async def _upload(
        self,
        client: NotaryClient,
        digest: FileDigest,
        submission: SubmissionRecord,
        name: str,
        path: Path,
        webhook: str | None,
    ) -> SubmissionRecord:
        target = str(path)
        while True:
            self._emit(NotaryStageChanged(target, NotaryStage.UPLOADING, submission.id, NotaryStatus.IN_PROGRESS,
                                          submitted_at=submission.created_at))
            self._emit(CredentialsIssued(target, submission.credentials_expire_at))
            await self._submissions.mark_uploading(submission.id)
            try:
                await self._upload_before_expiry(digest, submission)
            except (CredentialsExpiredError, _CredentialsWillExpire) as why:
                reason = ("the upload credentials expired mid-upload"
                          if isinstance(why, CredentialsExpiredError) else
                          "the upload could not finish before its credentials expire")
                log.warning("submission %s: %s; creating a new submission", submission.id, reason)
                await self._submissions.mark_abandoned(submission.id, reason)
                submission = await self._create(client, digest, name, path, webhook)
                continue
            await self._submissions.mark_uploaded(submission.id)
            record = await self._submissions.get(submission.id)
            assert record is not None
            return record

    async def _upload_before_expiry(self, digest: FileDigest, submission: SubmissionRecord) -> None:
        """Upload, giving up early when the measured rate says the credentials run out first."""
        progress = Progress(bytes_total=digest.identity.size,
                            rate_window_seconds=PROJECTION_WINDOW_SECONDS)
        engine = MultipartUploader(
            self._db, self._config.engine, hooks=[*self._hooks, progress],
            part_slots=self._part_slots, throttle=self._throttle, sleep=self._sleep,
            now=self._clock,
        )
        upload = asyncio.ensure_future(engine.upload(
            digest.identity.path, submission.bucket, submission.object, submission.credentials,
            digest=digest))
        try:
            while True:
                done, _ = await asyncio.wait({upload}, timeout=EXPIRY_CHECK_SECONDS)
                if done:
                    upload.result()
                    return
                left = submission.credentials_expire_at - self._clock()
                needed = progress.seconds_to_finish(PROJECTION_MIN_HISTORY_SECONDS)
                if needed is not None and needed > left - CREDENTIAL_SAFETY_SECONDS:
                    raise _CredentialsWillExpire
        finally:
            if not upload.done():
                upload.cancel()
                await asyncio.wait({upload})

    # ------------------------------------------------------------------ wait and log

    async def wait(
        self, submission_id: str, target: str = "", *, submitted_at: float | None = None
    ) -> SubmissionStatus:
        """Poll until the status is anything but IN_PROGRESS; survives any transient error."""
        await self.client()  # a bad key fails here, before the wait starts
        self._emit(NotaryStageChanged(target, NotaryStage.WAITING, submission_id, NotaryStatus.IN_PROGRESS,
                                      submitted_at=submitted_at))
        delay = self._config.poll_initial_seconds
        stuck_reported = False
        # Errors back off from the poll interval up to its maximum (a 429's floor above it).
        polling = Retrier(RetryPolicy(initial_delay_seconds=delay,
                                      throttled_initial_delay_seconds=delay,
                                      max_delay_seconds=max(delay, self._config.poll_max_seconds)),
                          self._sleep)

        def decide(error: Exception, retry_number: int) -> float:
            if not isinstance(error, NotaryError):
                raise error
            wait = notary_retry_delay(polling, error, retry_number + 1)
            log.debug("status of %s: %s; asking again in %.0f s", submission_id, error, wait)
            self._emit(Retrying(target, NOTARY_SERVICE, _why(error), "next status check", wait))
            return wait

        while True:
            status = await polling.run(lambda: self.status(submission_id), decide)
            if await self._submissions.get(submission_id) is not None:
                await self._submissions.set_notary_status(submission_id, status.status)
            if status.is_terminal:
                return status
            started = submitted_at or status.created_at or self._clock()
            if not stuck_reported and self._clock() - started > self._config.stuck_after_seconds:
                stuck_reported = True
                hours = (self._clock() - started) / 3600
                self._emit(NotaryStageChanged(
                    target, NotaryStage.WAITING, submission_id, NotaryStatus.IN_PROGRESS, submitted_at=started,
                    detail=f"stuck: in progress for {hours:.1f} h; Apple sometimes holds a "
                           "submission for in-depth analysis; still polling"))
            await self._sleep(delay * random.uniform(0.8, 1.0))
            delay = min(delay * 1.5, self._config.poll_max_seconds)

    async def _finish(
        self, client: NotaryClient, submission_id: str, status: str, target: str, path: Path
    ) -> NotarizeOutcome:
        self._emit(NotaryStageChanged(target, NotaryStage.FETCHING_LOG, submission_id, status))
        log_path, report = await self.fetch_log(submission_id, target)
        if await self._submissions.get(submission_id) is not None:
            await self._submissions.mark_done(submission_id, status, str(log_path))
        self._emit(NotaryStageChanged(target, NotaryStage.DONE, submission_id, status))
        return NotarizeOutcome(path, submission_id, status, log_path, report)

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


def _why(error: NotaryError) -> str:
    """What went wrong, without the advice (the retry line says what happens next)."""
    return error.cause if isinstance(error, NetworkError) else str(error)


def _write_text(path: Path, text: str) -> None:
    write_private(path, text.encode("utf-8"))  # 0600 in a 0700 logs/: see uploader.state_dir
