"""Where notaryd's CPU per GiB goes over HTTPS, component by component (``perf record``).

py-spy sees Python frames; the per-byte work is below them (OpenSSL, libc's copies, the kernel's
copies, the checksum). ``perf record`` samples every thread of one upload at a fixed rate of CPU
time, so samples / rate is CPU seconds. Two uploads of different sizes split each component into
a fixed part (start-up: imports, the S3 model, the state database) and a part per GiB (the
difference between the two, divided by the difference in size). Components are told apart by
the library (DSO) and symbol a sample landed in (``COMPONENTS``, first match wins). Without
``perf`` (``apt-get install linux-perf``) the section says so.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.measure import run_measured
from benchmarks.peers import Invocation

RATE_HZ = 999
GiB = 1024**3

Match = Callable[[str, str], bool]
COMPONENTS: tuple[tuple[str, Match], ...] = (
    ("TLS: AES-GCM and records (libcrypto, libssl)",
     lambda dso, sym: dso.startswith(("libcrypto", "libssl"))),
    ("TLS record buffers: copies and zeroing (libc memmove/memset)",
     lambda dso, sym: dso.startswith("libc.") and ("memmove" in sym or "memset" in sym
                                                   or "memcpy" in sym)),
    ("page cache to part buffer (kernel copy, preadv)",
     lambda dso, sym: dso.startswith("[kernel") and sym == "_copy_to_iter"),
    ("part buffer to socket (kernel copy, write)",
     lambda dso, sym: dso.startswith("[kernel") and sym == "_copy_from_iter"),
    ("rest of the kernel (TCP, wake-ups, page faults)", lambda dso, sym: dso.startswith("[kernel")),
    ("part checksum (CRC64NVME, awscrt)", lambda dso, sym: dso.startswith("_awscrt")),
    ("Python interpreter (libpython)", lambda dso, sym: dso.startswith("libpython")),
    ("everything else (uvloop, libc, other extensions)", lambda dso, sym: True),
)


def perf() -> str | None:
    return shutil.which("perf")


def component_seconds(report: str) -> dict[str, float]:
    """CPU seconds per component from ``perf report -F sample,dso,sym -t '|'`` output."""
    seconds = dict.fromkeys((name for name, _ in COMPONENTS), 0.0)
    for line in report.splitlines():
        fields = [f.strip() for f in line.split("|")]
        if len(fields) < 3 or not fields[0].isdigit():
            continue
        samples, dso, sym = int(fields[0]), fields[1], fields[2].removeprefix("[k] ").removeprefix("[.] ")
        name = next(name for name, match in COMPONENTS if match(dso, sym))
        seconds[name] += samples / RATE_HZ
    return seconds


def record(invocation: Invocation, workdir: Path, name: str, timeout_seconds: float) -> dict[str, float]:
    """One upload under ``perf record``; CPU seconds per component."""
    tool = perf()
    assert tool is not None
    data = workdir / f"{name}.perf"
    argv = [tool, "record", "-F", str(RATE_HZ), "-q", "-o", str(data), "--", *invocation.argv]
    cost = run_measured(argv, invocation.env, timeout_seconds, workdir / f"{name}.log")
    if cost.exit_code != 0 or not data.exists():
        raise RuntimeError(f"perf record exited {cost.exit_code}: {cost.stderr_tail}")
    report = subprocess.run(
        [tool, "report", "-i", str(data), "--no-children", "-g", "none", "--sort", "dso,sym",
         "-F", "sample,dso,sym", "-t", "|", "--stdio"],
        capture_output=True, text=True, timeout=600, check=True,
    ).stdout
    return component_seconds(report)


def split(small: tuple[int, dict[str, float]], large: tuple[int, dict[str, float]]) -> dict[str, Any]:
    """Per component: fixed CPU seconds per run and CPU seconds per GiB, from two sizes."""
    (small_size, small_cpu), (large_size, large_cpu) = small, large
    span = (large_size - small_size) / GiB
    rows = []
    for name, _ in COMPONENTS:
        per_gib = (large_cpu[name] - small_cpu[name]) / span
        rows.append({"component": name, "per_gib": per_gib,
                     "fixed": small_cpu[name] - per_gib * small_size / GiB})
    return {"sizes": [small_size, large_size], "rate_hz": RATE_HZ, "rows": rows}
