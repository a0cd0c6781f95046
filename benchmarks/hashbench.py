"""Hashing micro-benchmark: notaryd's single pass against plain ``hashlib.sha256``.

notaryd's pass (``uploader.hashing.hash_file``) computes the whole-file SHA-256 *and* every
part's checksum (the default algorithm, CRC64NVME) from the same reads. The baseline reads the same file with the same 8 MiB
``readinto`` buffer and only updates a SHA-256. Both run with the file already in the page cache
(one warm-up read first), alternating, best of ``repeats``; the ratio is notaryd's speed over
the baseline's (target ≥ 0.9). CPU seconds are this process's user+system time per pass.
"""

from __future__ import annotations

import asyncio
import hashlib
import resource
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

READ_SIZE = 8 * 1024 * 1024


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def plain_sha256(path: Path) -> str:
    sha = hashlib.sha256()
    buffer = bytearray(READ_SIZE)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buffer):
            sha.update(view[:n])
    return sha.hexdigest()


def notaryd_pass(path: Path, part_size: int) -> str:
    from uploader.hashing import hash_file
    from uploader.planning import plan_upload

    plan = plan_upload(path.stat().st_size, part_size)
    digest = asyncio.run(hash_file(path, plan))
    return digest.sha256


def run_hashbench(path: Path, part_size: int, repeats: int = 3) -> dict[str, Any]:
    size = path.stat().st_size
    plain_sha256(path)  # warm the page cache
    best: dict[str, tuple[float, float]] = {}
    digests: dict[str, str] = {}
    contenders: dict[str, Callable[[], str]] = {
        "hashlib": partial(plain_sha256, path),
        "notaryd": partial(notaryd_pass, path, part_size),
    }
    for _ in range(repeats):
        for name, fn in contenders.items():
            cpu, start = _cpu(), time.perf_counter()
            digests[name] = fn()
            wall, used = time.perf_counter() - start, _cpu() - cpu
            if name not in best or wall < best[name][0]:
                best[name] = (wall, used)
    if digests["hashlib"] != digests["notaryd"]:
        raise RuntimeError(f"SHA-256 mismatch: {digests}")
    gib = size / 2**30
    from uploader.checksum import DEFAULT_ALGORITHM

    result: dict[str, Any] = {"bytes": size, "part_size": part_size, "repeats": repeats,
                              "algorithm": DEFAULT_ALGORITHM.value}
    for name, (wall, used) in best.items():
        result[name] = {
            "seconds": wall,
            "mib_per_second": size / wall / 2**20,
            "cpu_seconds_per_gib": used / gib,
        }
    result["ratio"] = result["notaryd"]["mib_per_second"] / result["hashlib"]["mib_per_second"]
    return result
