"""Where notaryd spends its CPU: one extra upload under py-spy, summarised for RESULTS.md.

``py-spy record --format raw`` writes collapsed stacks (``frame;frame;... count``); we report
the functions with the most samples on top of the stack ("self"), the most samples anywhere
in the stack ("inclusive") and own samples grouped by the library the code lives in (libc,
libssl, libcrypto, python code, ...), as percentages of all samples (the breakdown: of the busy
samples, those with no waiting frame in their stack). Native frames (``--native``) are
included so time inside OpenSSL/awscrt shows up under the calling Python function; that needs
blocking sampling (the target pauses briefly per sample), so the profiled upload runs a little
slower than the measured ones and is not itself one of the measurements.
"""

from __future__ import annotations

import collections
import shutil
import sys
from pathlib import Path
from typing import Any

from benchmarks.measure import run_measured
from benchmarks.peers import Invocation


def py_spy() -> str | None:
    candidate = Path(sys.executable).with_name("py-spy")
    return str(candidate) if candidate.exists() else shutil.which("py-spy")


def summarise(collapsed: str, top: int = 12) -> dict[str, Any]:
    self_counts: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    libraries: collections.Counter[str] = collections.Counter()
    total = idle = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";")]
        total += count
        self_counts[frames[-1]] += count
        if any(f.split(" (")[0] in WAITING for f in frames):
            idle += count
        else:
            libraries[_library(frames[-1])] += count
        for frame in set(frames):
            inclusive[frame] += count
    def pct(counter: collections.Counter[str]) -> list[tuple[str, float]]:
        return [(f, 100.0 * c / total) for f, c in counter.most_common(top)] if total else []

    busy = total - idle
    return {
        "samples": total,
        "self": pct(self_counts),
        "inclusive": pct(inclusive),
        "busy_samples": busy,
        "libraries": [(lib, 100.0 * c / busy) for lib, c in libraries.most_common(top)]
        if busy else [],
    }


# Frames that mean "this thread is waiting" (idle worker threads, the event loop's poll): with
# --native py-spy samples them too, so they are left out of the per-library breakdown.
WAITING = frozenset({
    "PyThread_acquire_lock_timed", "_queue_SimpleQueue_get", "epoll_wait", "epoll_pwait",
    "select", "poll", "nanosleep", "clock_nanosleep", "pthread_cond_wait",
    "pthread_cond_timedwait",
})


def _library(frame: str) -> str:
    """Where a (shortened) frame's code lives: ``libssl.so.3`` -> ``libssl``; Python -> python."""
    where = frame.rpartition(" (")[2].rstrip(")")
    if not where or where.endswith(".py") or where.startswith("<"):
        return "python code"
    return where.split(".so")[0]


def _short(frame: str) -> str:
    """``function (path/to/module.py:123)`` -> ``function (module.py)``: lines vary per sample."""
    name, _, where = frame.partition(" (")
    module = where.rstrip(")").rsplit(":", 1)[0].rsplit("/", 1)[-1]
    return f"{name} ({module})" if module else name


def profile_run(invocation: Invocation, workdir: Path, timeout_seconds: float) -> dict[str, Any]:
    spy = py_spy()
    if spy is None:
        return {"error": "py-spy not installed (pip install py-spy)"}
    out = workdir / "profile.txt"
    argv = [spy, "record", "--format", "raw", "--rate", "250", "--native",
            "--output", str(out), "--", *invocation.argv]
    cost = run_measured(argv, invocation.env, timeout_seconds, workdir / "py-spy.log")
    if not out.exists():
        return {"error": f"py-spy produced no profile (exit {cost.exit_code}): {cost.stderr_tail}"}
    result = summarise(out.read_text())
    result["exit_code"] = cost.exit_code
    return result


def syscall_counts(invocation: Invocation, workdir: Path, timeout_seconds: float) -> dict[str, Any]:
    """``strace -f -c`` over one upload: calls per system call (a separate, slower run: every
    call is traced). What the event loop's wake-ups and socket writes come to, counted."""
    strace = shutil.which("strace")
    if strace is None:
        return {"error": "strace not installed (apt-get install strace)"}
    out = workdir / "strace.txt"
    argv = [strace, "-f", "-c", "-o", str(out), "--", *invocation.argv]
    cost = run_measured(argv, invocation.env, timeout_seconds, workdir / "strace.log")
    if not out.exists():
        return {"error": f"strace produced no table (exit {cost.exit_code}): {cost.stderr_tail}"}
    calls: dict[str, int] = {}
    for line in out.read_text().splitlines():
        fields = line.split()
        # "% time  seconds  usecs/call  calls  [errors]  syscall"
        if len(fields) >= 5 and fields[3].isdigit() and not fields[-1].startswith("total"):
            calls[fields[-1]] = int(fields[3])
    return {"calls": calls, "exit_code": cost.exit_code}
