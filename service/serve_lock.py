"""The state dir's ``serve.lock``: whoever holds it owns the state database.

``notaryd serve`` holds it for its lifetime (two daemons on one state dir would run the same jobs
twice); ``notaryd state set-aside`` holds it while it moves a damaged database, so no daemon can
start on it half-way. An ``flock`` dies with its process, so a SIGKILLed holder never leaves a
stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from uploader.errors import NotarydError

LOCK_FILE_NAME = "serve.lock"


@contextlib.contextmanager
def holding_serve_lock(state_dir: Path, *, busy: str) -> Iterator[None]:
    """Hold the lock for the block; raise ``NotarydError(busy)`` at once if another has it."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(state_dir / LOCK_FILE_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise NotarydError(busy) from None
        yield
    finally:
        os.close(fd)  # releases the lock
