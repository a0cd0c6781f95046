"""Waiting for a condition, with a deadline that only bounds the wait (it is never the assertion)."""

from __future__ import annotations

import asyncio
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
