"""The perf split: samples sorted into components by library and symbol, then fixed vs per GiB."""

from __future__ import annotations

import pytest

from benchmarks.costsplit import COMPONENTS, RATE_HZ, GiB, component_seconds, split

# `perf report --no-children -g none --sort dso,sym -F sample,dso,sym -t '|' --stdio`, as perf 6
# prints it (header lines start with '#').
REPORT = f"""# Samples: 8K of event 'cpu-clock:ppp'
#      Samples|Shared Object                               |Symbol
 {RATE_HZ * 2}        |libcrypto.so.3                              |[.] 0x0000000000241f99
 {RATE_HZ}        |[kernel.kallsyms]                           |[k] _copy_to_iter
 {RATE_HZ}        |[kernel.kallsyms]                           |[k] tcp_sendmsg_locked
 {RATE_HZ}        |libc.so.6                                   |[.] __memmove_avx_unaligned_erms
 {RATE_HZ}        |libc.so.6                                   |[.] malloc
 {RATE_HZ * 3}        |libpython3.11.so.1.0                        |[.] _PyEval_EvalFrameDefault
"""


def test_samples_become_cpu_seconds_per_component() -> None:
    seconds = component_seconds(REPORT)
    assert list(seconds) == [name for name, _ in COMPONENTS]
    by_start = {name.split(" (")[0].split(":")[0]: value for name, value in seconds.items()}
    assert by_start["TLS"] == 2.0
    assert by_start["page cache to part buffer"] == 1.0
    assert by_start["rest of the kernel"] == 1.0  # tcp_sendmsg_locked, not a copy
    assert by_start["TLS record buffers"] == 1.0  # memmove; malloc is "everything else"
    assert by_start["everything else"] == 1.0
    assert by_start["Python interpreter"] == 3.0
    assert sum(seconds.values()) == 9.0


def test_two_sizes_split_each_component_into_fixed_and_per_gib() -> None:
    names = [name for name, _ in COMPONENTS]
    small = {name: 1.0 for name in names} | {names[0]: 1.5}  # 1 GiB: 1 s fixed + 0.5 s/GiB
    large = {name: 1.0 for name in names} | {names[0]: 4.0}  # 6 GiB
    rows = {row["component"]: row for row in split((GiB, small), (6 * GiB, large))["rows"]}
    assert rows[names[0]]["per_gib"] == pytest.approx(0.5)
    assert rows[names[0]]["fixed"] == pytest.approx(1.0)
    assert rows[names[1]]["per_gib"] == pytest.approx(0.0)
    assert rows[names[1]]["fixed"] == pytest.approx(1.0)
