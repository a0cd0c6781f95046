"""Shared fixtures: one real SeaweedFS S3 server per test session, a fresh bucket per test.

``seaweed`` is session-scoped (start-up costs ~1 s; every test shares it). Tests isolate
themselves by bucket: ``bucket`` creates a new, uniquely named one for each test.
``fault_proxy`` puts a FaultProxy (clean plan; change it with ``set_plan``) in front of
``seaweed`` on its own thread, so sync and async tests alike can point clients at its ``url``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from service.emulator.faultproxy import FaultProxyThread
from service.emulator.seaweed import SeaweedServer


@pytest.fixture(scope="session")
def seaweed() -> Iterator[SeaweedServer]:
    server = SeaweedServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def bucket(seaweed: SeaweedServer) -> str:
    """Name of a freshly created, empty bucket on the session's SeaweedFS."""
    name = f"test-{secrets.token_hex(6)}"
    seaweed.create_bucket(name)
    return name


@pytest.fixture
def fault_proxy(seaweed: SeaweedServer) -> Iterator[FaultProxyThread]:
    """A fault-injecting proxy in front of ``seaweed``; starts with no faults."""
    with FaultProxyThread(seaweed.endpoint_url) as proxy:
        yield proxy
