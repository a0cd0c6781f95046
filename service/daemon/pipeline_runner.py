"""The daemon's ``JobRunner`` over the real notary pipeline (``uploader.notary.pipeline``).

One ``Notarizer`` per job, so that the job's hooks see only that job's events; all of them share
the daemon's database, ``PartSlots`` (parts in flight across jobs), bandwidth ``Throttle`` and
HTTP session. ``run`` is the same call ``notaryd notarize`` makes, so a daemon job and a CLI run
of the same archive resume each other's submission and upload.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

from uploader.bundle_zip import archive_path_for, remove_archive
from uploader.engine import MultipartUploader
from uploader.events import Hook
from uploader.notary.pipeline import NotarizeOutcome, Notarizer, NotarizeRequest, NotaryConfig
from uploader.notary.store import SubmissionStore

from .execution import JobRunner, RunnerFactory, Shared
from .logfmt import kv

log = logging.getLogger(__name__)

CANCELLED_REASON = "cancelled through the daemon (notaryd cancel / DELETE /v1/jobs/{id})"


class PipelineRunner:
    def __init__(self, config: NotaryConfig, hooks: Sequence[Hook], shared: Shared) -> None:
        self._db = shared.db
        self._config = config
        self._notarizer = Notarizer(
            shared.db, config, hooks=hooks, part_slots=shared.part_slots,
            throttle=shared.throttle, session=shared.session,
        )

    async def run(self, request: NotarizeRequest) -> NotarizeOutcome:
        try:
            return await self._notarizer.run(request)
        finally:
            await asyncio.shield(self._notarizer.close())

    async def cancel(self, path: Path, *, keep_archive: bool = False) -> None:
        """Abort the multipart upload of every unfinished submission of ``path``.

        The submission is then recorded as abandoned, so submitting the archive again starts a
        fresh submission instead of resuming into an aborted upload. The zip made from a bundle
        goes too, unless the job asked to keep it.
        """
        try:
            submissions = SubmissionStore(self._db)
            engine = MultipartUploader(self._db, self._config.engine)
            # a bundle's submission is recorded under the zip made from it
            zipped = archive_path_for(path, self._config.work_dir_in_effect)
            uploaded = {str(path), str(zipped)}
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
            if not keep_archive:
                await asyncio.to_thread(remove_archive, zipped)
        finally:
            await asyncio.shield(self._notarizer.close())


def pipeline_runner_factory(config: NotaryConfig, shared: Shared) -> RunnerFactory:
    def make(hooks: Sequence[Hook]) -> JobRunner:
        return PipelineRunner(config, hooks, shared)

    return make
