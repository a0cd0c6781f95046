"""Waiting for a condition, with a deadline that only bounds the wait (it is never the assertion)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

POLL_SECONDS = 0.05


def until(
    check: Callable[[], T | None], *, within: float, what: str, detail: Callable[[], str] = lambda: ""
) -> T:
    """``check()``'s first truthy answer; AssertionError naming ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not (answer := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not so after {within} s\n{detail()}")
        time.sleep(POLL_SECONDS)
    return answer


async def until_async(check: Callable[[], Awaitable[T | None]], *, within: float, what: str) -> T:
    """The async twin of :func:`until`, for checks that await a real service."""
    deadline = time.monotonic() + within
    while not (answer := await check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not so after {within} s")
        await asyncio.sleep(POLL_SECONDS)
    return answer


def returns(call: Callable[[], T], *, within: float, what: str,
            unblock: Callable[[], None] = lambda: None) -> T:
    """``call()``'s result, run on a daemon thread: AssertionError naming ``what`` if it has not
    returned after ``within`` seconds (``unblock()`` then frees the thread, e.g. by opening the
    other end of a FIFO it hangs on). Exceptions of ``call`` are raised here."""
    outcome: list[tuple[bool, object]] = []

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as error:  # handed to the caller
            outcome.append((False, error))

    thread = threading.Thread(target=run, daemon=True, name=f"returns: {what}")
    thread.start()
    thread.join(within)
    if thread.is_alive():
        unblock()
        raise AssertionError(f"{what}: still running after {within} s (it hangs)")
    ok, value = outcome[0]
    if not ok:
        raise value  # type: ignore[misc]
    return value  # type: ignore[return-value]


def release_fifo(path: str | os.PathLike[str]) -> None:
    """Let a reader blocked opening the FIFO ``path`` go: open its writing end, close it."""
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
