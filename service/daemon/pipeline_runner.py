"""The daemon's ``JobRunner`` over the real notary pipeline (``uploader.notary.pipeline``).

One ``Notarizer`` per job, so that the job's hooks see only that job's events; all of them share
the daemon's database, ``PartSlots`` (parts in flight across jobs) and bandwidth ``Throttle``.
``run`` is the same call ``notaryd notarize`` makes, so a daemon job and a CLI run of the same
archive resume each other's submission and upload.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

from service.settings import Settings
from uploader.bundle_zip import archive_path_for
from uploader.database import Database
from uploader.engine import MultipartUploader
from uploader.events import Hook
from uploader.notary.pipeline import Notarizer, NotarizeRequest, NotaryConfig
from uploader.notary.store import SubmissionStore
from uploader.throttle import Throttle

from .logfmt import kv
from .scheduler import JobRunner, RunnerFactory, RunOutcome, RunRequest
from .slots import PartSlots

log = logging.getLogger(__name__)

CANCELLED_REASON = "cancelled through the daemon (notaryd cancel / DELETE /v1/jobs/{id})"


class PipelineRunner:
    def __init__(
        self,
        db: Database,
        config: NotaryConfig,
        hooks: Sequence[Hook],
        part_slots: PartSlots,
        throttle: Throttle | None,
    ) -> None:
        self._db = db
        self._config = config
        self._notarizer = Notarizer(
            db, config, hooks=hooks, part_slots=part_slots, throttle=throttle
        )

    async def run(self, request: RunRequest) -> RunOutcome:
        try:
            outcome = await self._notarizer.run(
                NotarizeRequest(
                    request.path,
                    name=request.name,
                    webhook=request.webhook,
                    skip_preflight=request.skip_preflight,
                    wait=True,
                    staple=request.options.staple,
                    force=request.options.force,
                    keep_archive=request.options.keep_archive,
                )
            )
        finally:
            await asyncio.shield(self._notarizer.close())
        staple_line = outcome.staple.text if outcome.staple else ""
        report = "\n".join(line for line in (outcome.report, staple_line) if line)
        return RunOutcome(outcome.submission_id, outcome.status, outcome.log_path, report)

    async def cancel(self, path: Path) -> None:
        """Abort the multipart upload of every unfinished submission of ``path``.

        The submission is then recorded as abandoned, so submitting the archive again starts a
        fresh submission instead of resuming into an aborted upload.
        """
        try:
            submissions = SubmissionStore(self._db)
            engine = MultipartUploader(self._db, self._config.engine)
            # a bundle's submission is recorded under the zip made from it
            uploaded = {str(path), str(archive_path_for(path, self._config.state_dir))}
            for record in await submissions.list_submissions(include_finished=False):
                if record.path not in uploaded:
                    continue
                aborted = await engine.abort(Path(record.path), record.bucket, record.object,
                                             record.credentials)
                await submissions.mark_abandoned(record.id, CANCELLED_REASON)
                log.info(
                    "cancelled submission %s",
                    kv(submission=record.id, path=path, upload_aborted=aborted),
                )
        finally:
            await asyncio.shield(self._notarizer.close())


def pipeline_runner_factory(
    settings: Settings, db: Database, part_slots: PartSlots, throttle: Throttle | None
) -> RunnerFactory:
    config = settings.notary_config()  # fails at start-up, with the fix, if the key is missing

    def make(hooks: Sequence[Hook]) -> JobRunner:
        return PipelineRunner(db, config, hooks, part_slots, throttle)

    return make
