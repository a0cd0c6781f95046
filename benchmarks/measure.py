"""Run one client process and measure what it cost: wall time, CPU and peak memory.

CPU comes from ``wait4(2)``: the child's user+system seconds including every descendant it
reaped. So do wake-ups: ``ru_nvcsw``, the voluntary context switches of all its threads (each
one a thread that blocked in the poller, a lock or a read and was woken again), which is what
a client pays per event-loop round trip when the receiver sets the pace. Peak memory does *not* come from ``ru_maxrss``: Linux carries the parent's high-water
mark across fork+exec into it, so every child would report at least the harness's own RSS.
Instead a sampler thread reads ``VmHWM`` (the high-water RSS of the exec'd image) from
``/proc/PID/status`` of the child and its descendants every 20 ms and keeps the largest sum;
growth in the last 20 ms before exit can be missed. All four tools run as a single process
(threads included), so that is the whole tree. The child gets its own session so a timeout kills
exactly its process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcessCost:
    exit_code: int
    wall_seconds: float
    cpu_seconds: float  # user + system, whole reaped tree
    peak_rss_bytes: int
    timed_out: bool
    wakeups: int  # voluntary context switches (ru_nvcsw): each time a thread blocked and woke
    stderr_tail: str  # last lines, for the report when a run fails


def run_measured(
    argv: list[str], env: dict[str, str], timeout_seconds: float, log_path: Path
) -> ProcessCost:
    """Run ``argv`` to completion (or kill its process group at the timeout)."""
    timed_out = threading.Event()
    with open(log_path, "ab") as log:
        start = time.monotonic()
        proc = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )

        def kill() -> None:
            timed_out.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the group we created for this child only

        timer = threading.Timer(timeout_seconds, kill)
        timer.start()
        sampler = _PeakRssSampler(proc.pid)
        sampler.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
            sampler.stop()
        wall = time.monotonic() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped: keep Popen quiet
    # Stragglers the child left in its group (none expected) must not outlive the run.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    return ProcessCost(
        exit_code=proc.returncode,
        wall_seconds=wall,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        peak_rss_bytes=sampler.peak_bytes,
        timed_out=timed_out.is_set(),
        wakeups=usage.ru_nvcsw,
        stderr_tail=_tail(log_path),
    )


class _PeakRssSampler(threading.Thread):
    """Largest total ``VmHWM`` of a process and its descendants, sampled until stopped."""

    def __init__(self, pid: int, interval_seconds: float = 0.02) -> None:
        super().__init__(daemon=True, name=f"rss-{pid}")
        self.pid = pid
        self.interval = interval_seconds
        self.peak_bytes = 0
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()
        self.join()

    def run(self) -> None:
        while not self._stopping.is_set():
            self.peak_bytes = max(self.peak_bytes, self._tree_hwm())
            self._stopping.wait(self.interval)

    def _tree_hwm(self) -> int:
        total = 0
        pending = [self.pid]
        while pending:
            pid = pending.pop()
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1]) * 1024
                        break
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except (OSError, ValueError):
                continue
            pending.extend(int(c) for c in children)
        return total


def _tail(path: Path, lines: int = 3, limit: int = 600) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    kept = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(kept)[-limit:]
