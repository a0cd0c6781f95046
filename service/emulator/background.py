"""An event loop of its own on a daemon thread, so synchronous callers can run async servers.

``BackgroundEmulator`` and ``FaultProxyThread`` are built on it: subprocess tests and
``notaryd demo`` start a server, read and change it from their own thread with ``call``, and
stop it. The loop is the one ``service.runtime.run`` gives (uvloop where installed).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Self, TypeVar

T = TypeVar("T")


class Startable:
    """``with server:`` is ``server.start()`` ... ``server.stop()``, for the emulated world's
    synchronous parts (SeaweedFS, the fault proxy's thread)."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class AsyncStartable:
    """``async with server:`` is ``await server.start()`` ... ``await server.stop()``."""

    async def start(self) -> Self:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


class LoopThread:
    def __init__(self, name: str) -> None:
        self.name = name
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()

    def start(self) -> None:
        """Start the thread; returns once its loop is running."""
        self._ready.clear()
        self._thread = threading.Thread(target=self._main, name=self.name, daemon=True)
        self._thread.start()
        self._ready.wait()

    def start_serving(self, start: Coroutine[Any, Any, T], timeout_seconds: float) -> T:
        """Start the thread and run ``start`` (a server's start) on it; on failure the thread
        is stopped again."""
        self.start()
        try:
            return self.run(start, timeout_seconds)
        except BaseException:
            self.stop()
            raise

    def run(self, coroutine: Coroutine[Any, Any, T], timeout_seconds: float) -> T:
        """Run ``coroutine`` on the loop and wait (from another thread) for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._running()).result(timeout_seconds)

    def call(self, fn: Callable[[], T], timeout_seconds: float = 30.0) -> T:
        """Run ``fn()`` on the loop thread (where the server's state may be touched)."""
        if threading.current_thread() is self._thread:
            return fn()

        async def on_loop() -> T:
            return fn()

        return self.run(on_loop(), timeout_seconds)

    def stop(self, timeout_seconds: float = 30.0) -> None:
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        thread.join(timeout_seconds)
        self._thread = self._loop = self._stop = None

    def _running(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._loop

    def _main(self) -> None:
        from service.runtime import run

        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            await self._stop.wait()

        try:
            run(serve())
        finally:
            self._ready.set()  # start() must not wait for a loop that never ran
