"""A local emulator of Apple's Notary REST API (``/notary/v2``) plus its upload bucket.

``NotaryEmulator`` wires the pieces together and owns the servers' lifetime: the notary API
(``notary_api``, gated by ``auth`` and ``faults``) and the S3 front of its upload bucket
(``s3front``) each listen on their own loopback port (0: any free one, reported once started).
Landed objects go to ``processing``; ``presign`` serves developer logs; ``tickets`` answers the
stapling lookup. Behaviour follows the reference note on the notary API (observed, not just
documented); each module's docstring says which part it emulates.

Counters for tests: ``submissions`` (every submission created), ``requests[(endpoint, code)]``,
``token_stats``, ``auth_failures`` (why each 401 was given), ``s3.requests``.

Everything runs on one event loop; ``BackgroundEmulator`` runs it on a thread for synchronous
callers (subprocess tests, ``notaryd demo``). Times are Unix seconds from the injected clock.
"""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec

from service.emulator.auth import RequestBudget, TeamKey, TeamKeys, TokenRules, TokenStats
from service.emulator.background import AsyncStartable, LoopThread
from service.emulator.config import EmulatorConfig
from service.emulator.faults import FaultPolicy, Faults
from service.emulator.notary_api import NotaryApi
from service.emulator.presign import LogLinks
from service.emulator.processing import Processor
from service.emulator.s3front import Backend, S3Front
from service.emulator.submissions import EmulatedSubmission, Submissions
from service.emulator.tickets import LOOKUP_PATH, TicketDesk

T = TypeVar("T")


def backend_for(server: Any) -> Backend:
    """``Backend`` for a started ``service.emulator.seaweed.SeaweedServer``."""
    return Backend(
        endpoint_url=server.endpoint_url,
        access_key=server.access_key,
        secret_key=server.secret_key,
        region=server.region,
    )


def _token_rules(config: EmulatorConfig) -> TokenRules:
    return TokenRules(
        max_lifetime_seconds=config.jwt_max_lifetime_seconds,
        lifetime_tolerance_seconds=config.jwt_lifetime_tolerance_seconds,
        clock_leeway_seconds=config.clock_leeway_seconds,
    )


class NotaryEmulator(AsyncStartable):
    """The notary API on ``api_url`` and its upload bucket on ``s3_endpoint_url`` (loopback)."""

    def __init__(
        self,
        backend: Backend,
        *,
        config: EmulatorConfig | None = None,
        faults: Faults | None = None,
        host: str = "127.0.0.1",
        api_port: int = 0,
        s3_port: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        config = config or EmulatorConfig()
        self.host = host
        self._requested_ports = (api_port, s3_port)  # 0: any free port
        self._clock = clock
        self._runners: list[web.AppRunner] = []
        self.team_keys = TeamKeys(_token_rules(config), clock)
        self._policy = FaultPolicy(faults or Faults(), RequestBudget(config.hourly_request_limit))
        self._submissions = Submissions(config)
        self.s3 = S3Front(
            backend,
            self._submissions.grant_for,
            self._on_landed,
            region=config.region,
            virtual_host_buckets=[config.bucket],
            clock=clock,
        )
        self.tickets = TicketDesk(clock)
        self._processor = Processor(config, self.s3, self.tickets, clock)
        log_links = LogLinks(
            self._log_of, lifetime_seconds=config.log_url_lifetime_seconds, clock=clock
        )
        self._log_links = log_links
        self._api = NotaryApi(
            config=config,
            keys=self.team_keys,
            policy=self._policy,
            submissions=self._submissions,
            log_links=log_links,
            tickets=self.tickets,
            clock=clock,
            base_url=lambda: self.base_url,
        )
        self.app = self._api.app
        self._config = config
        self.api_port = 0
        self.s3_port = 0

    def __repr__(self) -> str:
        api_url = self.api_url if self.api_port else None
        return f"<NotaryEmulator api_url={api_url!r} submissions={len(self._submissions)}>"

    # -- settings that tests change at run time -----------------------------------------------

    @property
    def config(self) -> EmulatorConfig:
        """Verdict delay, credential lifetime ...; a new one applies from the next request."""
        return self._config

    @config.setter
    def config(self, config: EmulatorConfig) -> None:
        """Apply new settings to what happens from now on (e.g. a shorter credential lifetime)."""
        self._config = config
        self.team_keys.rules = _token_rules(config)
        self._policy.budget.limit = config.hourly_request_limit
        self._submissions.config = self._processor.config = self._api.config = config
        self._log_links.lifetime_seconds = config.log_url_lifetime_seconds

    @property
    def faults(self) -> Faults:
        return self._policy.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self._policy.faults = faults

    # -- what tests read -------------------------------------------------------------------------

    @property
    def submissions(self) -> dict[str, EmulatedSubmission]:
        return self._submissions.by_id

    @property
    def submissions_created(self) -> int:
        return len(self._submissions)

    @property
    def requests(self) -> collections.Counter[tuple[str, str]]:
        return self._api.requests

    @property
    def keys(self) -> dict[str, TeamKey]:
        return self.team_keys.keys

    @property
    def token_stats(self) -> TokenStats:
        return self.team_keys.token_stats

    @property
    def auth_failures(self) -> list[str]:
        return self.team_keys.auth_failures

    # -- addresses ----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    @property
    def api_url(self) -> str:
        """The notary API (NOTARYD_API_URL)."""
        return self.base_url + "/notary/v2"

    @property
    def ticket_url(self) -> str:
        """The CloudKit-style ticket lookup (NOTARYD_TICKET_URL)."""
        return self.base_url + LOOKUP_PATH

    def environment(self, key: TeamKey) -> dict[str, str]:
        """The ``NOTARYD_*`` settings that point notaryd at this emulator with ``key``."""
        return {
            "NOTARYD_API_URL": self.api_url,
            "NOTARYD_S3_ENDPOINT_URL": self.s3_endpoint_url,
            "NOTARYD_S3_ACCELERATE": "0",
            "NOTARYD_TICKET_URL": self.ticket_url,
            "NOTARYD_KEY_ID": key.key_id,
            "NOTARYD_ISSUER_ID": key.issuer_id,
            "NOTARYD_PRIVATE_KEY": str(key.path),
        }

    @property
    def s3_endpoint_url(self) -> str:
        """The S3 front that checks the issued credentials (NOTARYD_S3_ENDPOINT_URL)."""
        return f"http://{self.host}:{self.s3_port}"

    # -- lifetime -----------------------------------------------------------------------------

    async def start(self) -> NotaryEmulator:
        """Create the bucket and serve both apps; returns once both accept connections."""
        await self.s3.create_bucket(self._config.bucket)
        try:
            api_port, s3_port = self._requested_ports
            self.api_port = await self._serve(self.app, api_port)
            self.s3_port = await self._serve(self.s3.app, s3_port)
        except BaseException:
            await self.stop()
            raise
        return self

    async def _serve(self, app: web.Application, port: int) -> int:
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        self._runners.append(runner)
        await web.TCPSite(runner, self.host, port).start()
        return int(runner.addresses[0][1])

    async def stop(self) -> None:
        await self._processor.stop()
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        await self.s3._close()

    # -- keys and submissions -----------------------------------------------------------------

    def register_key(
        self, key_id: str, issuer_id: str, public_key: ec.EllipticCurvePublicKey
    ) -> TeamKey:
        return self.team_keys.register(key_id, issuer_id, public_key)

    def make_team_key(
        self, directory: Path, *, key_id: str | None = None, issuer_id: str | None = None
    ) -> TeamKey:
        """Generate, write (``AuthKey_<KEYID>.p8``, 0600) and register a team key (sync I/O)."""
        return self.team_keys.make(directory, key_id=key_id, issuer_id=issuer_id)

    def release(self, submission_id: str) -> None:
        """Un-stick a submission; its verdict follows at once if processing had finished."""
        self._processor.release(self.submissions[submission_id.lower()])

    def _on_landed(self, bucket: str, key: str) -> None:
        submission = self._submissions.for_object(bucket, key)
        if submission is not None:
            self._processor.landed(submission)

    def _log_of(self, submission_id: str) -> dict[str, Any] | None:
        submission = self._submissions.get(submission_id)
        return submission.log if submission else None


class BackgroundEmulator:
    """Runs a ``NotaryEmulator`` on its own event loop in a daemon thread (for sync callers).

    ``call(fn)`` runs ``fn(emulator)`` on the emulator's loop thread and returns its result, so
    faults and counters can be changed or read safely from another thread.
    """

    def __init__(self, factory: Callable[[], NotaryEmulator]) -> None:
        self._factory = factory
        self._thread = LoopThread("notary-emulator")
        self._emulator: NotaryEmulator | None = None

    @property
    def emulator(self) -> NotaryEmulator:
        if self._emulator is None:
            raise RuntimeError("BackgroundEmulator is not started")
        return self._emulator

    def start(self, timeout_seconds: float = 60.0) -> NotaryEmulator:
        """Start the emulator; returns once both of its servers accept connections."""

        async def start() -> NotaryEmulator:  # built on its loop: what it makes belongs there
            return await self._factory().start()

        self._emulator = self._thread.start_serving(start(), timeout_seconds)
        return self._emulator

    def call(self, fn: Callable[[NotaryEmulator], T], timeout_seconds: float = 30.0) -> T:
        return self._thread.call(lambda: fn(self.emulator), timeout_seconds)

    def run(self, fn: Callable[[NotaryEmulator], Coroutine[Any, Any, T]],
            timeout_seconds: float = 60.0) -> T:
        """``await fn(emulator)`` on the emulator's loop thread and return its result."""
        return self._thread.run(fn(self.emulator), timeout_seconds)

    def stop(self) -> None:
        if self._emulator is not None:
            with contextlib.suppress(Exception):
                self._thread.run(self._emulator.stop(), 30)
        self._thread.stop()
        self._emulator = None

    def __enter__(self) -> NotaryEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
