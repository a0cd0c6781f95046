"""The suite's fixtures, each defined once, and its tiers (see tests/support/tiers.py).

``seaweed`` is one real SeaweedFS per test session (per xdist worker); tests isolate themselves
by bucket (``bucket``). The notary emulator runs in the test's event loop (``emulator``) or on a
thread of its own (``notary``) for tests that drive real ``notaryd`` processes against it.
``daemon`` is ``notaryd serve`` with the scripted fake pipeline; ``real_daemon`` runs the real
pipeline against ``notary`` and is left for the test to start.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path

import aiohttp
import pytest

from service.emulator.auth import TeamKey
from service.emulator.config import EmulatorConfig
from service.emulator.faultproxy import FaultProxyThread
from service.emulator.notary import BackgroundEmulator, NotaryEmulator, backend_for
from service.emulator.seaweed import SeaweedServer
from tests.support.clocks import ShiftedClock
from tests.support.daemon import Daemon
from tests.support.emulator import notary_env
from tests.support.environment import isolate, release, skip_hides_a_gap
from tests.support.files import PART
from tests.support.keychain import SecretService
from tests.support.keychain import available as keychain_available
from tests.support.tiers import TIERS, tier_of, violation, watched
from uploader.config import EngineConfig
from uploader.database import Database
from uploader.events import Event
from uploader.notary.auth import TokenSource, load_api_key
from uploader.notary.client import NotaryClient
from uploader.notary.pipeline import NotaryConfig
from uploader.retry import RetryPolicy

# -- the run's own environment -----------------------------------------------------------------

RUN_ROOT = pytest.StashKey[Path | None]()


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """A fresh home and a clean environment for the whole run (tests/support/environment.py)."""
    config.stash[RUN_ROOT] = isolate(os.environ)


def pytest_unconfigure(config: pytest.Config) -> None:
    release(config.stash.get(RUN_ROOT, None))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On CI, a skip for anything but another platform fails: CI installs what the suite needs."""
    report = yield
    if report.skipped and not hasattr(report, "wasxfail") and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2]).removeprefix("Skipped: ")
        if skip_hides_a_gap(reason):
            report.outcome = "failed"
            report.longrepr = f"skipped on CI ({reason}): CI must install and start what this test needs"
    return report


# -- tiers -------------------------------------------------------------------------------------


TIER = pytest.StashKey[str]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--tier", choices=TIERS, action="append",
                     help="run only the tests of this tier; repeat for several (tests/support/tiers.py)")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Gives every test its tier (also as a marker, for -m) and runs the fastest tier first."""
    for item in items:
        declared = {mark.name for mark in item.iter_markers()}
        item.stash[TIER] = tier_of(declared, getattr(item, "fixturenames", ()))
        item.add_marker(item.stash[TIER])
    items.sort(key=lambda item: TIERS.index(item.stash[TIER]))
    if wanted := config.getoption("--tier"):
        config.hook.pytest_deselected(items=[item for item in items if item.stash[TIER] not in wanted])
        items[:] = [item for item in items if item.stash[TIER] in wanted]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    tier = item.stash[TIER]
    with watched(tier) as seen:
        result = yield
    if message := violation(tier, seen):
        pytest.fail(message, pytrace=False)
    return result


# -- S3 ----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def seaweed() -> Iterator[SeaweedServer]:
    server = SeaweedServer(stop_timeout_seconds=1)  # its data is thrown away: no graceful stop (~10 s)
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
    """A fault-injecting proxy in front of ``seaweed`` on its own thread; starts with no faults."""
    with FaultProxyThread(seaweed.endpoint_url) as proxy:
        yield proxy


# -- state -------------------------------------------------------------------------------------


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    """A real state database where the daemon and the CLI keep theirs."""
    database = await Database.open(tmp_path / "state" / "notaryd.sqlite3")
    yield database
    await database.close()


# -- the notary emulator -----------------------------------------------------------------------


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    """Override in a module for another verdict delay or fault."""
    return EmulatorConfig(processing_delay_seconds=0.3)


@pytest.fixture
def emulator_clock() -> ShiftedClock:
    return ShiftedClock()


@pytest.fixture
async def emulator(
    seaweed: SeaweedServer, emulator_config: EmulatorConfig, emulator_clock: ShiftedClock
) -> AsyncIterator[NotaryEmulator]:
    async with NotaryEmulator(
        backend_for(seaweed), config=emulator_config, clock=emulator_clock
    ) as running:
        yield running


@pytest.fixture
def notary(seaweed: SeaweedServer, emulator_config: EmulatorConfig) -> Iterator[BackgroundEmulator]:
    """The emulator on a background thread, for tests whose own code does not run a loop."""
    background = BackgroundEmulator(
        lambda: NotaryEmulator(backend_for(seaweed), config=emulator_config)
    )
    background.start()
    try:
        yield background
    finally:
        background.stop()


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
    """A NotaryClient of the emulator that records its events in ``events``."""
    async with aiohttp.ClientSession() as session:
        yield NotaryClient(emulator.api_url, tokens, session, hooks=[events.append])


@pytest.fixture
def notary_config(emulator: NotaryEmulator, team_key: TeamKey, tmp_path: Path) -> NotaryConfig:
    """The pipeline's settings for the emulator, with quick retries and polls."""
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


# -- the daemon --------------------------------------------------------------------------------


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
def secret_service(tmp_path: Path) -> Iterator[SecretService]:
    """GNOME Keyring's Secret Service on a private session bus: the real keychain keyring uses
    on a Linux desktop (tests/support/keychain.py)."""
    if not keychain_available():
        pytest.skip("dbus-daemon or gnome-keyring-daemon missing: run scripts/install-system-deps.sh")
    with SecretService(tmp_path / "keychain") as service:
        yield service


@pytest.fixture
def real_daemon(tmp_path: Path, notary: BackgroundEmulator) -> Iterator[Daemon]:
    """`notaryd serve` with the real pipeline against the emulator (not started)."""
    d = Daemon(tmp_path, fake=False, env=notary_env(notary, tmp_path / "keys"))
    try:
        yield d
    finally:
        d.stop()
