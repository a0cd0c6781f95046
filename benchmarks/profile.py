"""Where notaryd spends its CPU: one extra upload under py-spy, summarised for RESULTS.md.

``py-spy record --format raw`` writes collapsed stacks (``frame;frame;... count``); we report
the functions with the most samples on top of the stack ("self") and the most samples anywhere
in the stack ("inclusive"), as percentages of all samples. Native frames (``--native``) are
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
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";")]
        total += count
        self_counts[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    def pct(counter: collections.Counter[str]) -> list[tuple[str, float]]:
        return [(f, 100.0 * c / total) for f, c in counter.most_common(top)] if total else []

    return {"samples": total, "self": pct(self_counts), "inclusive": pct(inclusive)}


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
