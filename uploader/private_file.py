"""Small files that hold secrets (the API key, a config file with a token): read safely, and
refused when other users may read them.

``read_small_file`` opens without blocking (a FIFO put in the file's place cannot hang the
caller), checks on the opened descriptor that it is a regular file, and reads at most a cap.
``readable_by_others`` is the one wording of the permission refusal, with its fix. Blocking: call
them before the event loop runs or off it.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


class NotRegularFile(OSError):
    def __init__(self, path: Path, mode: int) -> None:
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        super().__init__(errno.EINVAL, kind)
        self.path = path


def read_small_file(path: Path, limit: int) -> tuple[bytes, os.stat_result]:
    """At most ``limit + 1`` bytes of the regular file ``path`` (so a caller can tell "too
    large"), and its status as opened. Raises ``OSError`` (``NotRegularFile`` for a FIFO, a
    device or a directory)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFile(path, info.st_mode)
        chunks: list[bytes] = []
        left = limit + 1
        while left > 0 and (chunk := os.read(fd, min(left, 64 * 1024))):
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks), info
    finally:
        os.close(fd)


def readable_by_others(path: Path, info: os.stat_result, what: str) -> str | None:
    """The refusal when group or others may read ``path`` (``what`` names it), else None."""
    if info.st_mode & 0o077 == 0:
        return None
    return (f"{path}: {what} is readable by other users (mode "
            f"{stat.S_IMODE(info.st_mode):04o}); run `chmod 600 {path}`")
