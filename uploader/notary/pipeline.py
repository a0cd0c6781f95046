"""A notarisation from input to stapled verdict: ``Notarizer``, a short runner of stages.

``Notarizer.run`` takes the input's lock (one run per build; ``uploader.input_lock``), then:

1. **Never twice** (``never_twice``): before anything reads the build, its code signature is
   looked up; a build already stapled, or Accepted before, ends the run here.
2. **Preflight** (``uploader.preflight``): offline signing checks; problems end the run as
   ``PreflightFailed`` before a byte is uploaded (``--skip-preflight`` skips them).
3. **Package** (``ends.prepare``): a ``.app`` is zipped into the work dir, hashing as it
   writes; a ``.zip``/``.pkg``/``.dmg`` goes as it is and is **hashed** once. The SHA-256 and
   part checksums are stored with the upload, so a re-run of the same, unchanged file (same
   size, mtime, inode *and ctime*, which every write changes and no user can set back) skips
   the 20 GB read. The same SHA-256 Accepted before (``never_twice``) ends the run here.
4. **Submit** at most once per archive (``submit_once``: intents, and the orphans of runs that
   died between the POST and recording its answer).
5. **Upload** with the multipart engine. The 12-hour credentials cannot be renewed: if S3 says
   ExpiredToken, or the measured rate says the rest cannot be sent before they expire, the
   submission is recorded as abandoned and a new one is created for the same archive.
6. **Verdict** (``verdict``): wait for Apple's status, then fetch, store and render the log.
7. **Staple** (``ends.staple_after``) after Accepted, a ``.app``, ``.dmg`` or ``.pkg`` input.

Every step is resumable, because every fact is in SQLite before the next step relies on it.
``Notarizer.cancel`` ends what runs left of an input: it aborts the multipart uploads of its
unfinished submissions and records them abandoned (the daemon's cancel calls it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

import aiohttp

from uploader.artifact import Artifact
from uploader.bundle_zip import archive_path_for, remove_archive
from uploader.database import Database
from uploader.engine import MultipartUploader
from uploader.errors import CredentialsExpiredError
from uploader.events import (
    CredentialsIssued,
    Emitter,
    HashProgress,
    Hook,
    NotaryStageChanged,
    Notice,
    UploadStateChanged,
)
from uploader.fence import current_fence
from uploader.hashing import FileDigest, hash_file
from uploader.input_lock import input_lock
from uploader.lifecycle import NotaryStage, NotaryStatus, SubmissionState, UploadState
from uploader.notary import ends
from uploader.notary.auth import TokenSource, load_api_key
from uploader.notary.client import (
    NotaryClient,
    SubmissionStatus,
)
from uploader.notary.model import (
    API_RETRY,
    NotarizeOutcome,
    NotarizeRequest,
    NotaryConfig,
    PreflightFailed,
    RunParts,
)
from uploader.notary.never_twice import NeverTwice
from uploader.notary.store import SubmissionRecord, SubmissionStore
from uploader.notary.submit_once import Submitter
from uploader.notary.verdict import Verdicts
from uploader.planning import plan_upload
from uploader.progress import Progress
from uploader.retry import Retrier
from uploader.source_file import FileIdentity, SharedIdentity
from uploader.throttle import Throttle
from uploader.upload_state import UploadStore

__all__ = ["NotarizeOutcome", "NotarizeRequest", "Notarizer", "NotaryConfig", "PreflightFailed"]

log = logging.getLogger(__name__)

# Re-create the submission when the rest of the upload would finish this close to expiry.
CREDENTIAL_SAFETY_SECONDS = 600.0
# How often the upload's projected finish is compared with the credentials' expiry.
EXPIRY_CHECK_SECONDS = 30.0
# The projection's rate: measured over this window, trusted after this much history.
PROJECTION_WINDOW_SECONDS = 120.0
PROJECTION_MIN_HISTORY_SECONDS = 10.0


class _CredentialsWillExpire(Exception):
    pass


class Notarizer:
    """Runs notarisations. Safe to use for several archives at once on one event loop."""

    def __init__(self, db: Database, config: NotaryConfig, *, hooks: Iterable[Hook] = (),
                 part_slots: asyncio.Semaphore | None = None, throttle: Throttle | None = None,
                 session: aiohttp.ClientSession | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock: Callable[[], float] = time.time) -> None:
        self._db, self._config, self._hooks = db, config, list(hooks)
        self._part_slots, self._throttle, self._session = part_slots, throttle, session
        self._sleep, self._clock = sleep, clock
        self._client: NotaryClient | None = None
        self._uploads = UploadStore(db)
        parts = RunParts(self.client, config, SubmissionStore(db, clock=clock),
                         Emitter(self._hooks), Retrier(API_RETRY, sleep), sleep, clock)
        self._submissions, self._emit = parts.submissions, parts.emit
        self._never_twice = NeverTwice(parts)
        self._submitter = Submitter(parts)
        self._verdicts = Verdicts(parts)

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
        opened = request.artifact  # refused before a byte is read, by the edge or here
        if opened is None:
            opened = await asyncio.to_thread(Artifact.open, path)
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
            return await self._run_locked(client, request, opened, target, waited_since)

    async def _run_locked(self, client: NotaryClient, request: NotarizeRequest, opened: Artifact,
                          target: str, waited_since: float | None) -> NotarizeOutcome:
        # Never notarise the same build twice: asked before anything reads the build.
        code = await asyncio.to_thread(ends.code_identity, opened)
        if not request.force and (earlier := await self._never_twice.by_signature(
                client, opened, target, code)) is not None:
            return await self._staple(request, opened, earlier)
        if not request.skip_preflight:
            await self._preflight(opened, target)
        async with ends.zip_in_use(opened, self._config.work_dir_in_effect):
            prepared = await self._prepare(opened, target)
            try:
                outcome = await self._notarize(client, request, prepared, target, code,
                                              waited_since, opened)
            except Exception:
                # A failed run leaves no zip behind; an interrupted one keeps it to resume.
                if not request.keep_archive:
                    await asyncio.to_thread(prepared.discard)
                raise
            if not request.keep_archive:
                await asyncio.to_thread(prepared.discard)
        return await self._staple(request, opened, outcome)

    async def _staple(self, request: NotarizeRequest, opened: Artifact,
                      outcome: NotarizeOutcome) -> NotarizeOutcome:
        if outcome.staple is not None or not (outcome.accepted and request.staple):
            return outcome  # already stapled, not accepted, or not asked to
        note = await ends.staple_after(opened, self._config.ticket_url,
                                           self._config.staple_max_wait_seconds, self._session,
                                           log_path=outcome.log_path)
        return dataclasses.replace(outcome, staple=note)

    async def _prepare(self, opened: Artifact, target: str) -> ends.PreparedInput:
        packaging = opened.kind.zipped
        self._emit(NotaryStageChanged(target, NotaryStage.HASHING,
                                      detail="packaging the bundle" if packaging else ""))

        def progress(done: int, total: int) -> None:  # packaging a bundle hashes as it zips
            self._emit(HashProgress(target, done, total, packaging=packaging))

        return await ends.prepare(opened, self._config.work_dir_in_effect,
                                      self._config.engine,
                                      progress)

    async def _notarize(self, client: NotaryClient, request: NotarizeRequest,
                        prepared: ends.PreparedInput, target: str,
                        code: str | None, waited_since: float | None,
                        opened: Artifact) -> NotarizeOutcome:
        """Hash (unless packaging did), then submit, upload and wait for the verdict; the run
        waited for, or the same SHA-256 Accepted before, ends it early."""
        path, archive = prepared.source, prepared.archive
        digest = prepared.digest or await self._digest(archive, target)
        if waited_since is not None and (decided := await self._submissions.decided_since(
                digest.sha256, waited_since)) is not None:
            return await self._verdicts.of_the_run_waited_for(client, decided, target, path)
        if code is not None and code != await asyncio.to_thread(ends.code_identity, opened):
            code = None  # signed again while it was read: vouch for neither signature
        if not request.force and (earlier := await self._never_twice.by_sha256(
                client, digest.sha256, path, target, code)) is not None:
            return earlier
        name = request.name or (f"{path.stem}.zip" if prepared.packaged else archive.name)
        submission = await self._submitter.submission_for(client, digest, name, archive, request.webhook)
        if (submission.state is not SubmissionState.UPLOADED
                and submission.notary_status in (None, NotaryStatus.IN_PROGRESS)):
            submission = await self._upload(client, digest, submission, name, archive,
                                            request.webhook)
        if not request.wait:
            return NotarizeOutcome(path, submission.id, submission.notary_status or NotaryStatus.IN_PROGRESS,
                                   None, "")
        status = await self.wait(submission.id, target, submitted_at=submission.created_at)
        outcome = await self._verdicts.finish(client, submission.id, status.status, target, path)
        if outcome.accepted and code is not None:
            await self._submissions.set_code_identity(submission.id, code)
        return outcome

    async def _preflight(self, opened: Artifact, target: str) -> None:
        from uploader.preflight import run_preflight

        self._emit(NotaryStageChanged(target, NotaryStage.PREFLIGHT))
        report = await asyncio.to_thread(run_preflight, opened)
        if report.has_errors:
            raise PreflightFailed(opened.path, report.render_text())

    async def _digest(self, path: Path, target: str) -> FileDigest:
        """The file's SHA-256 and part checksums: stored ones for the very same file (or, in a
        fenced run taken over, for the size and mtime its earlier holder recorded), else hashed.
        A fenced run records what it used for a successor on another host."""
        identity = await asyncio.to_thread(FileIdentity.of, path)
        plan = plan_upload(identity.size, self._config.engine.part_size, self._config.engine.limits)
        fence = current_fence()
        shared = await fence.recorded_identity() if fence is not None else None
        digest = await self._uploads.find_digest(identity, plan.part_size, shared)
        if digest is None:
            self._emit(NotaryStageChanged(target, NotaryStage.HASHING))
            self._emit(UploadStateChanged(target, UploadState.HASHING, identity.size, 0))

            def progress(done: int) -> None:
                self._emit(HashProgress(target, done, identity.size))

            digest = await hash_file(path, plan, self._config.engine.checksum, on_progress=progress)
        now = SharedIdentity(identity.size, identity.mtime_ns, digest.sha256)
        if fence is not None and shared != now:  # inodes and ctimes differ between hosts
            await fence.record_identity(now)
        return digest

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
                submission = await self._submitter.create(client, digest, name, path, webhook)
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

    # ------------------------------------------------------------------ verdict and log

    async def wait(
        self, submission_id: str, target: str = "", *, submitted_at: float | None = None
    ) -> SubmissionStatus:
        """Poll until the status is anything but IN_PROGRESS; survives any transient error."""
        return await self._verdicts.wait(submission_id, target, submitted_at=submitted_at)

    async def status(self, submission_id: str) -> SubmissionStatus:
        """The service's status of a submission; ``UnknownSubmission`` for an id it does not know."""
        return await self._verdicts.status(submission_id)

    async def fetch_log(self, submission_id: str, target: str = "") -> tuple[Path, str]:
        """Download the log, store it under ``<state dir>/logs/``, return it and its report."""
        return await self._verdicts.fetch_log(submission_id, target)

    # ------------------------------------------------------------------ cancel

    async def cancel(self, path: Path, *, reason: str,
                     keep_archive: bool = False) -> list[tuple[SubmissionRecord, bool]]:
        """Abort the multipart upload of every unfinished submission of ``path``.

        Each submission is then recorded as abandoned for ``reason``, so submitting the archive
        again starts a fresh submission instead of resuming into an aborted upload. The zip made
        from a bundle goes too, unless ``keep_archive``. Returns each submission with whether its
        upload was aborted.
        """
        engine = MultipartUploader(self._db, self._config.engine)
        # a bundle's submission is recorded under the zip made from it
        zipped = archive_path_for(path, self._config.work_dir_in_effect)
        uploaded = {str(path), str(zipped)}
        cancelled = []
        for record in await self._submissions.list_submissions(include_finished=False):
            if record.path not in uploaded:
                continue
            aborted = await engine.abort(Path(record.path), record.bucket, record.object,
                                         record.credentials)
            await self._submissions.mark_abandoned(record.id, reason)
            cancelled.append((record, aborted))
        if not keep_archive:
            await asyncio.to_thread(remove_archive, zipped)
        return cancelled
