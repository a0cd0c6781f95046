from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.emulator.notary import BackgroundEmulator, EmulatorConfig, NotaryEmulator, backend_for
from service.emulator.seaweed import SeaweedServer

from .helpers import Daemon


@pytest.fixture(autouse=True)
def _stop_leftover_daemons() -> Iterator[None]:
    yield
    while Daemon.live:
        Daemon.live.pop().stop()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    """The daemon with the scripted fake pipeline (fast parts), started."""
    d = Daemon(tmp_path, env={"FAKE_PARTS": "8", "FAKE_PART_SECONDS": "0.1"})
    d.start()
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture
def notary(seaweed: SeaweedServer) -> Iterator[BackgroundEmulator]:
    """The real notary emulator (in front of the session's SeaweedFS) on a background thread."""
    background = BackgroundEmulator(
        lambda: NotaryEmulator(backend_for(seaweed), config=EmulatorConfig(processing_delay_seconds=0.3))
    )
    background.start()
    try:
        yield background
    finally:
        background.stop()


def notary_env(notary: BackgroundEmulator, key_dir: Path) -> dict[str, str]:
    """NOTARYD_* settings that point `notaryd serve` at the emulator."""
    key = notary.call(lambda e: e.make_team_key(key_dir))
    emulator = notary.emulator
    return {
        "NOTARYD_API_URL": emulator.api_url,
        "NOTARYD_S3_ENDPOINT_URL": emulator.s3_endpoint_url,
        "NOTARYD_S3_ACCELERATE": "0",
        "NOTARYD_KEY_ID": key.key_id,
        "NOTARYD_ISSUER_ID": key.issuer_id,
        "NOTARYD_PRIVATE_KEY": str(key.path),
        "NOTARYD_PART_SIZE": str(5 * 1024 * 1024),
        "NOTARYD_POLL_INITIAL": "0.2",
        "NOTARYD_POLL_MAX": "0.5",
    }


@pytest.fixture
def real_daemon(tmp_path: Path, notary: BackgroundEmulator) -> Iterator[Daemon]:
    """`notaryd serve` with the real pipeline against the emulator (not started)."""
    d = Daemon(tmp_path, fake=False, env=notary_env(notary, tmp_path / "keys"))
    try:
        yield d
    finally:
        d.stop()
