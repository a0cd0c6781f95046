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

from uploader.events import Hook
from uploader.notary.pipeline import NotarizeOutcome, Notarizer, NotarizeRequest, NotaryConfig

from .execution import JobRunner, RunnerFactory, Shared
from .logfmt import kv

log = logging.getLogger(__name__)

CANCELLED_REASON = "cancelled through the daemon (notaryd cancel / DELETE /v1/jobs/{id})"


class PipelineRunner:
    def __init__(self, config: NotaryConfig, hooks: Sequence[Hook], shared: Shared) -> None:
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
        """``Notarizer.cancel``: abort the uploads of ``path``'s unfinished submissions, record
        them abandoned, remove the zip made from a bundle unless the job asked to keep it."""
        try:
            cancelled = await self._notarizer.cancel(path, reason=CANCELLED_REASON,
                                                     keep_archive=keep_archive)
            for record, aborted in cancelled:
                log.info(
                    "cancelled submission %s",
                    kv(submission=record.id, path=path, upload_aborted=aborted),
                )
        finally:
            await asyncio.shield(self._notarizer.close())


def pipeline_runner_factory(config: NotaryConfig, shared: Shared) -> RunnerFactory:
    def make(hooks: Sequence[Hook]) -> JobRunner:
        return PipelineRunner(config, hooks, shared)

    return make
