"""Fixtures for end-to-end notarisation: the real emulator (in front of real SeaweedFS),
a real team key file, a real state database, and archives made on the spot."""

from __future__ import annotations

import io
import os
import time
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from service.emulator.notary import EmulatorConfig, NotaryEmulator, TeamKey, backend_for
from service.emulator.seaweed import SeaweedServer
from uploader.config import EngineConfig, MiB
from uploader.database import Database
from uploader.notary.pipeline import NotaryConfig
from uploader.retry import RetryPolicy

PART = 5 * MiB


class ShiftedClock:
    """Wall-clock time plus an offset the test moves (the emulator's idea of 'now')."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def clock() -> ShiftedClock:
    return ShiftedClock()


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(processing_delay_seconds=0.3)


@pytest.fixture
async def emulator(
    seaweed: SeaweedServer, emulator_config: EmulatorConfig, clock: ShiftedClock
) -> AsyncIterator[NotaryEmulator]:
    async with NotaryEmulator(backend_for(seaweed), config=emulator_config, clock=clock) as running:
        yield running


@pytest.fixture
def team_key(emulator: NotaryEmulator, tmp_path: Path) -> TeamKey:
    return emulator.make_team_key(tmp_path / "keys")


@pytest.fixture
def notary_config(emulator: NotaryEmulator, team_key: TeamKey, tmp_path: Path) -> NotaryConfig:
    assert team_key.path is not None
    return NotaryConfig(
        api_url=emulator.api_url,
        key_path=team_key.path,
        key_id=team_key.key_id,
        issuer_id=team_key.issuer_id,
        engine=EngineConfig(part_size=PART, concurrency=4, stall_timeout_seconds=5,
                            endpoint_url=emulator.s3_endpoint_url,
                            retry=RetryPolicy(initial_delay_seconds=0.05, max_delay_seconds=0.5,
                                              throttled_initial_delay_seconds=0.1)),
        state_dir=tmp_path / "state",
        poll_initial_seconds=0.1,
        poll_max_seconds=0.5,
    )


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "state" / "notaryd.sqlite3")
    yield database
    await database.close()


def make_archive(path: Path, payload_bytes: int, marker: bytes = b"") -> Path:
    """A stored (uncompressed) zip of random data, optionally carrying an emulator marker."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        with archive.open("Game.app/Contents/Resources/data.bin", "w", force_zip64=True) as member:
            left = payload_bytes
            while left:
                n = min(left, MiB)
                member.write(os.urandom(n))
                left -= n
        if marker:
            archive.writestr("Game.app/Contents/Resources/marker.txt", marker)
    return path


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()
