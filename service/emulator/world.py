"""One emulated world on loopback: SeaweedFS (the S3 store), the notary emulator in front of it,
an optional fault proxy in front of the S3 that notaryd talks to, and the settings that point
notaryd at them. Used by `notaryd demo`, `python -m service.emulator`, the test fixtures
(tests/conftest.py) and scripts/soak.py.

``with EmulatedWorld(...)``: the emulator serves on a thread of its own (for callers without an
event loop); ``async with``: on the caller's loop. SeaweedFS is started and stopped by the world,
unless a running one is passed in (the test session's, shared by every test). The fault proxy
fronts the emulator's S3 when there is an emulator, else SeaweedFS itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from service.emulator.auth import TeamKey
from service.emulator.config import EmulatorConfig
from service.emulator.faultplan import FaultPlan
from service.emulator.faultproxy import FaultProxyThread
from service.emulator.faults import Faults
from service.emulator.notary import BackgroundEmulator, NotaryEmulator, backend_for
from service.emulator.s3front import PUT_OBJECT_ONLY
from service.emulator.seaweed import SeaweedServer
from uploader.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class WorldConfig:
    emulator: EmulatorConfig | None = field(default_factory=EmulatorConfig)  # None: S3 alone
    faults: FaultPlan | None = None  # a fault proxy in front of the S3 notaryd talks to
    data_dir: Path | None = None  # SeaweedFS's (None: a temporary one, removed at stop)
    put_object_only: bool = False  # upload credentials deny ListParts, Abort, Head/GetObject
    emulator_faults: Faults | None = None
    host: str = "127.0.0.1"
    api_port: int = 0  # 0: any free port
    s3_port: int = 0
    clock: Callable[[], float] = time.time  # the emulator's
    stop_timeout_seconds: float = 10.0  # SeaweedFS's graceful stop (data thrown away: 1 will do)


class EmulatedWorld:
    def __init__(self, config: WorldConfig | None = None, *,
                 seaweed: SeaweedServer | None = None) -> None:
        self.config = config or WorldConfig()
        self._own_seaweed = seaweed is None
        self._seaweed = seaweed
        self._emulator: NotaryEmulator | None = None
        self.background: BackgroundEmulator | None = None  # set by ``with``
        self.proxy: FaultProxyThread | None = None
        self._stack = contextlib.ExitStack()

    @property
    def seaweed(self) -> SeaweedServer:
        if self._seaweed is None:
            raise RuntimeError("the emulated world is not started")
        return self._seaweed

    @property
    def emulator(self) -> NotaryEmulator:
        if self._emulator is None:
            raise RuntimeError("the emulated world has no running notary emulator")
        return self._emulator

    @property
    def s3_url(self) -> str:
        """The S3 endpoint notaryd is pointed at: the proxy's, the emulator's, or SeaweedFS's."""
        if self.proxy is not None:
            return self.proxy.url
        return self._emulator.s3_endpoint_url if self._emulator else self.seaweed.endpoint_url

    def call(self, fn: Callable[[NotaryEmulator], T]) -> T:
        """``fn(emulator)`` where the emulator runs (its own thread under ``with``)."""
        return self.background.call(fn) if self.background else fn(self.emulator)

    def team_key(self, directory: Path) -> TeamKey:
        """A new team API key the emulator accepts, written to ``directory``."""
        return self.call(lambda emulator: emulator.make_team_key(directory))

    def environment(self, key: TeamKey) -> dict[str, str]:
        """The ``NOTARYD_*`` settings that point notaryd at this world with ``key``."""
        return {**self.emulator.environment(key), "NOTARYD_S3_ENDPOINT_URL": self.s3_url}

    def s3_environment(self) -> dict[str, str]:
        """What a plain `notaryd upload` needs to write to SeaweedFS (through the proxy, if any)."""
        return {"AWS_ACCESS_KEY_ID": self.seaweed.access_key,
                "AWS_SECRET_ACCESS_KEY": self.seaweed.secret_key}

    def new_emulator(self) -> NotaryEmulator:
        c = self.config
        assert c.emulator is not None
        emulator = NotaryEmulator(backend_for(self.seaweed), config=c.emulator,
                                  faults=c.emulator_faults, host=c.host, api_port=c.api_port,
                                  s3_port=c.s3_port, clock=c.clock)
        if c.put_object_only:
            emulator.s3.denied_operations = PUT_OBJECT_ONLY
        return emulator

    # -- lifetime -------------------------------------------------------------------------------

    def _start_seaweed(self) -> None:
        if not self._own_seaweed:
            return
        self._seaweed = SeaweedServer(data_dir=self.config.data_dir,
                                      stop_timeout_seconds=self.config.stop_timeout_seconds)
        try:
            self._seaweed.start()
        except FileNotFoundError as missing:
            raise ConfigError(f"the emulated world needs SeaweedFS ({missing}); "
                              "install it with pip install 'notaryd[emulator]'") from None
        self._stack.callback(self._seaweed.stop)

    def _start_proxy(self) -> None:
        if self.config.faults is not None:
            self.proxy = self._stack.enter_context(FaultProxyThread(self.s3_url, self.config.faults))

    def __enter__(self) -> EmulatedWorld:
        try:
            self._start_seaweed()
            if self.config.emulator is not None:
                self.background = BackgroundEmulator(self.new_emulator)
                self._emulator = self._stack.enter_context(self.background)
            self._start_proxy()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()
        self._emulator = self.background = self.proxy = None

    async def __aenter__(self) -> EmulatedWorld:
        await asyncio.to_thread(self._start_seaweed)
        try:
            if self.config.emulator is not None:
                self._emulator = await self.new_emulator().start()
            await asyncio.to_thread(self._start_proxy)
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._emulator is not None:
            await self._emulator.stop()
        await asyncio.to_thread(self.__exit__)
