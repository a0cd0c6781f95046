"""Fixtures: a real notary emulator on loopback in front of the session's real SeaweedFS."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from service.emulator.notary import EmulatorConfig, NotaryEmulator, TeamKey, backend_for
from service.emulator.seaweed import SeaweedServer
from uploader.events import Event
from uploader.notary.auth import TokenSource, load_api_key
from uploader.notary.client import NotaryClient


class FakeClock:
    """Wall-clock time plus an offset that tests move forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def emulator_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(processing_delay_seconds=0.2)


@pytest.fixture
async def emulator(
    seaweed: SeaweedServer, emulator_config: EmulatorConfig, emulator_clock: FakeClock
) -> AsyncIterator[NotaryEmulator]:
    async with NotaryEmulator(
        backend_for(seaweed), config=emulator_config, clock=emulator_clock
    ) as running:
        yield running


@pytest.fixture
def team_key(emulator: NotaryEmulator, tmp_path: Path) -> TeamKey:
    return emulator.make_team_key(tmp_path / "keys")


@pytest.fixture
def tokens(team_key: TeamKey) -> TokenSource:
    assert team_key.path is not None
    key = load_api_key(team_key.path, key_id=team_key.key_id, issuer_id=team_key.issuer_id)
    return TokenSource(key)


@pytest.fixture
def events() -> list[Event]:
    return []


@pytest.fixture
async def client(
    emulator: NotaryEmulator, tokens: TokenSource, events: list[Event]
) -> AsyncIterator[NotaryClient]:
    async with aiohttp.ClientSession() as session:
        yield NotaryClient(emulator.api_url, tokens, session, hooks=[events.append])


@pytest.fixture
def sample_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "samples"
    directory.mkdir()
    yield directory
