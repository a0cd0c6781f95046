"""One notarisation of a build at a time: a per-input lock file in the state dir.

Two runs on the same build (a CI retry racing the first attempt, a second terminal) would
otherwise drive the same submission at once. ``input_lock`` takes ``fcntl.flock`` on
``<state dir>/locks/<sha256 of the input's resolved path>.lock`` and writes its pid there; a
second run finds it held, says who holds it (``on_busy``, at once and again every minute) and
polls until it is free, then
goes on, finding whatever the first run left (its verdict, or its upload to resume). The kernel
drops the lock when its holder exits, however it exits, so a crash never leaves it stuck.
Polling rather than a blocking ``flock`` in a thread: the wait stays cancellable (``--timeout``,
Ctrl-C) and leaves no thread behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from uploader.retry import Pace, Retrier, no_retry
from uploader.state_dir import DIR_MODE, FILE_MODE, unusable

LOCK_DIR = "locks"
POLL_SECONDS = 1.0
REMIND_EVERY_POLLS = 60  # a waiting run says so again every minute, never only once
STEADY = Pace(POLL_SECONDS, POLL_SECONDS, growth=1.0, spread=0.0)


def lock_path(state_dir: Path, resolved: Path) -> Path:
    key = hashlib.sha256(os.fsencode(resolved)).hexdigest()[:32]
    return state_dir / LOCK_DIR / f"{key}.lock"


@contextlib.asynccontextmanager
async def input_lock(
    state_dir: Path,
    path: Path,
    *,
    on_busy: Callable[[int | None], None],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncIterator[None]:
    """Hold the lock of ``path`` (resolved) for the block; ``on_busy(pid or None)`` while it
    waits, at once and every ``REMIND_EVERY_POLLS`` polls."""
    resolved = Path(await asyncio.to_thread(os.path.realpath, path))
    fd = await asyncio.to_thread(_open, lock_path(state_dir, resolved))
    try:
        polls = 0

        async def take() -> object:
            nonlocal polls
            holder = await asyncio.to_thread(_try_take, fd)
            if holder is not _TAKEN and polls % REMIND_EVERY_POLLS == 0:
                on_busy(holder if isinstance(holder, int) else None)
            polls += 1
            return holder

        await Retrier(sleep=sleep).poll(take, lambda holder: holder is _TAKEN, STEADY, no_retry)
        yield
    finally:
        os.close(fd)  # releases the lock


_TAKEN = object()


def _open(path: Path) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    except OSError as error:
        raise unusable(path.parent, error) from None


def _try_take(fd: int) -> object:
    """``_TAKEN`` (and our pid written), else the holder's pid (None if unreadable)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return _TAKEN
