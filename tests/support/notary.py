"""Asking the notary emulator for verdicts the way a client would; running the pipeline."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from service.emulator.notary import NotaryEmulator
from tests.support.waiting import until_async
from uploader.database import Database
from uploader.events import Hook
from uploader.notary.client import NotaryClient
from uploader.notary.pipeline import NotarizeOutcome, Notarizer, NotarizeRequest, NotaryConfig


def stapling_config(notary_config: NotaryConfig, emulator: NotaryEmulator) -> NotaryConfig:
    """``notary_config`` that staples from the emulator's ticket lookup."""
    return dataclasses.replace(notary_config, ticket_url=emulator.ticket_url,
                               staple_max_wait_seconds=60)


async def notarize(db: Database, config: NotaryConfig, request: NotarizeRequest,
                   hooks: Sequence[Hook] = ()) -> NotarizeOutcome:
    """One ``Notarizer.run``, as one `notaryd notarize` makes it."""
    notarizer = Notarizer(db, config, hooks=hooks)
    try:
        return await notarizer.run(request)
    finally:
        await notarizer.close()


async def verdict(client: NotaryClient, submission_id: str, within: float = 20.0) -> str:
    """The submission's status once it is no longer In Progress."""

    async def terminal() -> str | None:
        status = await client.status(submission_id)
        return status.status if status.is_terminal else None

    return await until_async(terminal, within=within, what=f"a verdict for {submission_id}")
