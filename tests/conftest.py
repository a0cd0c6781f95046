"""The fixtures shared across test folders (the others sit beside their tests), and the suite's
tiers (see tests/support/tiers.py).

``seaweed`` is one real SeaweedFS per test session (per xdist worker); tests isolate themselves
by bucket (``bucket``). The notary emulator runs in the test's event loop (``emulator``) or on a
thread of its own (``notary``) for tests that drive real ``notaryd`` processes against it.
``daemon`` is ``notaryd serve`` with the scripted fake pipeline; ``real_daemon`` runs the real
pipeline against ``notary`` and is left for the test to start. SeaweedFS, the emulator and the
fault proxy are the parts of ``service.emulator.world.EmulatedWorld``, as in `notaryd demo`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from pathlib import Path

import aiohttp
import pytest

from service.daemon.job_store import JobStore
from service.emulator.auth import TeamKey
from service.emulator.config import EmulatorConfig
from service.emulator.faultplan import FaultPlan
from service.emulator.faultproxy import FaultProxyThread
from service.emulator.notary import BackgroundEmulator, NotaryEmulator
from service.emulator.seaweed import SeaweedServer
from service.emulator.tickets import TicketDesk
from service.emulator.world import EmulatedWorld, WorldConfig
from tests.support.clocks import ManualClock, ShiftedClock
from tests.support.daemon import Daemon
from tests.support.emulator import notary_env
from tests.support.environment import isolate, release, skip_hides_a_gap
from tests.support.files import PART
from tests.support.keychain import SecretService
from tests.support.keychain import available as keychain_available
from tests.support.postgres import PostgresServer
from tests.support.serving import serving
from tests.support.tiers import TIERS, tier_of, violation, watched
from uploader.config import EngineConfig
from uploader.database import Database
from uploader.events import Event
from uploader.notary.auth import TokenSource, load_api_key
from uploader.notary.client import NotaryClient
from uploader.notary.pipeline import NotaryConfig
from uploader.postgres import open_database
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
    # its data is thrown away: no graceful stop (~10 s)
    with EmulatedWorld(WorldConfig(emulator=None, stop_timeout_seconds=1)) as s3_alone:
        yield s3_alone.seaweed


@pytest.fixture
def bucket(seaweed: SeaweedServer) -> str:
    """Name of a freshly created, empty bucket on the session's SeaweedFS."""
    name = f"test-{secrets.token_hex(6)}"
    seaweed.create_bucket(name)
    return name


@pytest.fixture
def fault_proxy(seaweed: SeaweedServer) -> Iterator[FaultProxyThread]:
    """A fault-injecting proxy in front of ``seaweed`` on its own thread; starts with no faults."""
    with EmulatedWorld(WorldConfig(emulator=None, faults=FaultPlan()), seaweed=seaweed) as world:
        assert world.proxy is not None
        yield world.proxy


# -- files -------------------------------------------------------------------------------------


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """An empty directory (0755) that ``nobody`` can reach, unlike ``tmp_path`` (its parents are
    0700): for the unprivileged children of tests/support/privileges.py."""
    path = Path(tempfile.mkdtemp(prefix="notaryd-shared-"))
    try:
        path.chmod(0o755)
        closed = [p for p in path.parents if not p.stat().st_mode & stat.S_IXOTH]
        assert not closed, f"{closed[0]} is closed to other users: point TMPDIR somewhere they can reach"
        yield path
    finally:
        shutil.rmtree(path)


# -- state -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL cluster per test session (tests/support/postgres.py)."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def store_url(request: pytest.FixtureRequest) -> str:
    """NOTARYD_DATABASE_URL for a test run on each store: "" (SQLite in the state dir), then a
    fresh database of the session's PostgreSQL."""
    if request.param == "sqlite":
        return ""
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database()


@pytest.fixture
def open_db(store_url: str, tmp_path: Path) -> Callable[..., Awaitable[Database]]:
    """Opens the test's state database on its store (``store_url``); ``path`` is the SQLite
    file (a PostgreSQL database is the same each time it is opened)."""
    async def opened(path: Path = tmp_path / "state" / "notaryd.sqlite3") -> Database:
        return await open_database(path, store_url)
    return opened


@pytest.fixture
async def db(open_db: Callable[..., Awaitable[Database]]) -> AsyncIterator[Database]:
    """A real state database where the daemon and the CLI keep theirs, on each store."""
    database = await open_db()
    yield database
    await database.close()


@pytest.fixture
async def job_store(db: Database) -> JobStore:
    """The daemon's real job store on ``db`` (its tables brought up to date)."""
    return await JobStore.open(db)


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
    config = WorldConfig(emulator=emulator_config, clock=emulator_clock)
    async with EmulatedWorld(config, seaweed=seaweed) as world:  # on the test's loop
        yield world.emulator


@pytest.fixture
def ticket_clock() -> ManualClock:
    """The ticket desk's clock; pass ``sleep=ticket_clock.sleep`` so waits move it."""
    return ManualClock(1000.0)


@pytest.fixture
async def ticket_desk(ticket_clock: ManualClock) -> AsyncIterator[TicketDesk]:
    """The emulator's ticket lookup alone, on loopback at ``ticket_desk.url``; 30 s propagation."""
    desk = TicketDesk(ticket_clock, propagation_seconds=30, piece_pause_seconds=0.01)
    async with serving(desk.handle) as url:
        desk.url = url  # type: ignore[attr-defined]
        yield desk


@pytest.fixture
def notary(seaweed: SeaweedServer, emulator_config: EmulatorConfig) -> Iterator[BackgroundEmulator]:
    """The emulator on a background thread, for tests whose own code does not run a loop."""
    with EmulatedWorld(WorldConfig(emulator=emulator_config), seaweed=seaweed) as world:
        assert world.background is not None
        yield world.background


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
