"""Asking the notary emulator for verdicts the way a client would; running the pipeline."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

from service.daemon.slots import PartSlots
from service.emulator.notary import NotaryEmulator
from service.emulator.sample_app import make_sample_app
from tests.support.files import PART
from tests.support.waiting import until_async
from uploader.database import Database
from uploader.events import Event, Hook, PartAcknowledged
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


def several_part_bundle(directory: Path) -> Path:
    """A .app whose zip is several parts long (random bytes do not deflate). Blocking."""
    app = make_sample_app(directory, "Game")
    (app / "Contents" / "Resources" / "data.bin").write_bytes(os.urandom(3 * PART))
    return app


async def interrupted_mid_upload(db: Database, config: NotaryConfig, source: Path) -> None:
    """A run stopped after its first part landed, as a cancelled daemon job is (an interrupted
    run keeps the zip of a bundle, to resume)."""
    acknowledged = asyncio.Event()

    def first_part(event: Event) -> None:
        if isinstance(event, PartAcknowledged):
            acknowledged.set()

    notarizer = Notarizer(db, config, hooks=[first_part], part_slots=PartSlots(1))
    run = asyncio.create_task(notarizer.run(NotarizeRequest(source, skip_preflight=True)))
    await acknowledged.wait()
    run.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await run
    await notarizer.close()


async def verdict(client: NotaryClient, submission_id: str, within: float = 20.0) -> str:
    """The submission's status once it is no longer In Progress."""

    async def terminal() -> str | None:
        status = await client.status(submission_id)
        return status.status if status.is_terminal else None

    return await until_async(terminal, within=within, what=f"a verdict for {submission_id}")
