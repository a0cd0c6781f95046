"""What a notarisation of a bundle tells the person following it (integration, in-process)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from service.emulator.notary import NotaryEmulator
from service.emulator.sample_app import make_sample_app
from uploader.database import Database
from uploader.events import Event, HashProgress, Notice
from uploader.notary.pipeline import Notarizer, NotarizeRequest, NotaryConfig


async def test_a_bundle_run_says_packaging_and_comes_back_stapled(
    emulator: NotaryEmulator, notary_config: NotaryConfig, db: Database, tmp_path: Path
) -> None:
    app = make_sample_app(tmp_path / "build", "Game")
    config = dataclasses.replace(notary_config, ticket_url=emulator.ticket_url,
                                 staple_max_wait_seconds=60)
    seen: list[Event] = []
    notarizer = Notarizer(db, config, hooks=[seen.append])
    try:
        outcome = await notarizer.run(NotarizeRequest(app, skip_preflight=True))
    finally:
        await notarizer.close()
    assert outcome.staple is not None and outcome.staple.outcome == "stapled", outcome.staple
    assert any(isinstance(e, HashProgress) and e.packaging for e in seen)
    assert not [e for e in seen if isinstance(e, Notice)]  # a first run resumes nothing
