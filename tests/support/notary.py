"""Asking the notary emulator for verdicts the way a client would."""

from __future__ import annotations

from tests.support.waiting import until_async
from uploader.notary.client import NotaryClient


async def verdict(client: NotaryClient, submission_id: str, within: float = 20.0) -> str:
    """The submission's status once it is no longer In Progress."""

    async def terminal() -> str | None:
        status = await client.status(submission_id)
        return status.status if status.is_terminal else None

    return await until_async(terminal, within=within, what=f"a verdict for {submission_id}")
