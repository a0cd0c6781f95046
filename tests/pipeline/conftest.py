"""Fixtures for the Notarizer's tests."""

from __future__ import annotations

import pytest

from service.emulator.notary import NotaryEmulator
from tests.support.notary import stapling_config
from uploader.notary.pipeline import NotaryConfig


@pytest.fixture
def stapling(emulator: NotaryEmulator, notary_config: NotaryConfig) -> NotaryConfig:
    """``notary_config`` stapling from the emulator's ticket lookup, which issues tickets at once."""
    emulator.tickets.propagation_seconds = 0
    return stapling_config(notary_config, emulator)
