"""RESULTS.md's section on the link-bound conditions (issue 19): HTTPS through a TCP-level link.

From this run's own numbers: notaryd's wake-ups and CPU per GiB when the receiver sets the pace,
what share of a 2-core machine it takes at 1 Gbit/s, its fixed start-up cost (from the clean
sizes), and the profile and system-call counts of one upload in ``tls-slow``.
"""

from __future__ import annotations

from typing import Any

from benchmarks.report import TOOLS, Cell, GiB, cells

LINK_BITS_PER_SECOND = 1e9  # "at 1 Gbit/s": the tls-shaped link
CORES = 2  # the build Mac the issue asks about


def _fixed_cpu(table: dict[tuple[str, int, str], Cell], condition: str) -> tuple[float, float] | None:
    """(fixed CPU-s, marginal CPU-s per GiB) of notaryd between two sizes of ``condition``."""
    sizes = sorted({s for (c, s, t) in table if c == condition and t == "notaryd"})
    if len(sizes) < 2:
        return None
    small, large = (table[(condition, s, "notaryd")] for s in (sizes[0], sizes[-1]))
    if small.cpu_per_gib is None or large.cpu_per_gib is None:
        return None
    cpu_small = small.cpu_per_gib * sizes[0] / GiB
    cpu_large = large.cpu_per_gib * sizes[-1] / GiB
    marginal = (cpu_large - cpu_small) / ((sizes[-1] - sizes[0]) / GiB)
    return cpu_small - marginal * sizes[0] / GiB, marginal


def _share(table: dict[tuple[str, int, str], Cell]) -> list[str]:
    sizes = sorted({s for (c, s, t) in table if c == "tls-shaped" and t == "notaryd"})
    cell = table.get(("tls-shaped", sizes[-1], "notaryd")) if sizes else None
    if cell is None or cell.cpu_per_gib is None or cell.mib_s is None:
        return ["No tls-shaped run of notaryd: the share of a 2-core machine is not measured."]
    link_gib_s = LINK_BITS_PER_SECOND / 8 / GiB
    at_link = cell.cpu_per_gib * link_gib_s
    measured = cell.cpu_per_gib * cell.mib_s / 1024
    return [
        f"**Share of a {CORES}-core build Mac at 1 Gbit/s**: notaryd spends "
        f"{cell.cpu_per_gib:.2f} CPU-s per GiB in tls-shaped at {sizes[-1] / GiB:g} GiB; "
        f"moving 1 Gbit/s ({link_gib_s:.3f} GiB/s) that is {at_link:.2f} of one core, "
        f"**{100 * at_link / CORES:.0f} % of {CORES} cores** (at the {cell.mib_s:.0f} MiB/s "
        f"this run reached: {measured:.2f} cores, {100 * measured / CORES:.0f} %). This machine "
        "runs client, link shaper and sink on the same 2 cores, so that is an upper bound for "
        "the client alone."
    ]


def _syscalls(profile: dict[str, Any]) -> list[str]:
    calls = (profile.get("syscalls") or {}).get("calls") or {}
    size = profile.get("size")
    if not calls or not size:
        return [f"System calls: not counted ({(profile.get('syscalls') or {}).get('error', 'not run')})."]
    gib = size / GiB
    wanted = ("write", "writev", "sendmsg", "sendto", "epoll_wait", "epoll_pwait", "futex",
              "preadv2", "getsockopt")
    rows = [f"| {name} | {calls[name] / gib:,.0f} |" for name in wanted if name in calls]
    return [
        f"`strace -f -c` over one more notaryd upload of {gib:g} GiB in {profile['condition']} "
        "(a separate run: tracing slows every call), calls per GiB:",
        "", "| system call | calls per GiB |", "|---|---|", *rows,
    ]


def _profile(profile: dict[str, Any]) -> list[str]:
    if "samples" not in profile:
        return [f"Profile: not taken ({profile.get('error', 'not run')})."]
    startup = next((p for f, p in profile.get("inclusive") or []
                    if f.startswith("_find_and_load ")), None)
    libraries = ", ".join(f"{lib} {pct:.0f} %" for lib, pct in (profile.get("libraries") or [])[:6])
    own = ", ".join(f"`{f}` {p:.1f} %" for f, p in (profile.get("self") or [])[:6])
    return [
        f"py-spy (native frames) over one notaryd upload of {profile['size'] / GiB:g} GiB in "
        f"{profile['condition']}: {profile['samples']} samples, {profile['busy_samples']} busy. "
        + (f"Module imports at start-up: {startup:.0f} % of all samples. " if startup else "")
        + f"Busy samples by library: {libraries}. Top own samples: {own}.",
    ]


def link_section(results: dict[str, Any]) -> list[str]:
    table = cells(results)
    conditions = [c for c in results["conditions"] if c.get("link")]
    if not conditions:
        return []
    lines = ["", "## When the link is the bottleneck (tls-shaped, tls-slow)", ""]
    lines.append(
        "Wake-ups per GiB are the tool's voluntary context switches (`ru_nvcsw` of all its "
        "threads: each time one blocked in the poller, a lock or a read and was woken), per GiB "
        "uploaded. notaryd against each peer, CPU per GiB (lower is better) and wake-ups:"
    )
    lines += ["", "| condition | size | " + " | ".join(TOOLS) + " |",
              "|---|---|" + "---|" * len(TOOLS)]
    for c in conditions:
        for size in c["sizes"]:
            row = []
            for tool in TOOLS:
                cell = table.get((c["name"], size, tool))
                row.append("—" if cell is None or cell.cpu_per_gib is None else
                           f"{cell.cpu_per_gib:.2f} s, {(cell.wakeups_per_gib or 0) / 1000:.1f} k")
            lines.append(f"| {c['name']} | {size / GiB:g} GiB | " + " | ".join(row) + " |")
    lines += ["", *_share(table), ""]
    for condition in ("clean", "tls"):
        fixed = _fixed_cpu(table, condition)
        if fixed is not None:
            lines.append(
                f"notaryd's fixed cost ({condition}, from its two sizes): {fixed[0]:.2f} CPU-s per "
                f"run (interpreter, imports, botocore's service model, the state database), then "
                f"{fixed[1]:.2f} CPU-s per GiB. At 1 GiB the fixed part alone is "
                f"{fixed[0]:.2f} CPU-s of the CPU per GiB shown above."
            )
    profile = results.get("profile_tls_slow") or {}
    lines += ["", *_profile(profile), "", *_syscalls(profile)]
    return [*lines, *_cost_split(results.get("cost_split") or {})]


def _cost_split(split: dict[str, Any]) -> list[str]:
    """The perf split of notaryd's CPU over HTTPS (``benchmarks.costsplit``)."""
    lines = ["", "### Where notaryd's CPU goes over HTTPS, by component", ""]
    if "rows" not in split:
        return [*lines, f"not measured: {split.get('error', 'not run')}"]
    small, large = (size / GiB for size in split["sizes"])
    lines.append(
        f"`perf record` at {split['rate_hz']} Hz over two notaryd uploads over HTTPS (tls "
        f"condition, {small:g} and {large:g} GiB; every thread, native code and kernel "
        "included): per component, the CPU each further GiB costs (the difference between the "
        "two, per GiB) and what is left at size 0 (start-up). Sampling costs a little CPU of "
        "its own, so the totals run slightly above the measured ones (`benchmarks/costsplit.py`)."
    )
    slow, fast = split.get("slow"), split.get("fast_small")
    header = "| component | CPU-s per GiB | fixed CPU-s per run |"
    if slow and fast:
        header += f" {small:g} GiB direct | {small:g} GiB in tls-slow |"
    lines += ["", header, "|---" * header.count(" |") + "|"]
    for row in split["rows"]:
        line = f"| {row['component']} | {row['per_gib']:.2f} | {row['fixed']:.2f} |"
        if slow and fast:
            line += f" {fast[row['component']]:.2f} | {slow[row['component']]:.2f} |"
        lines.append(line)
    total = (f"| **total** | **{sum(r['per_gib'] for r in split['rows']):.2f}** | "
             f"**{sum(r['fixed'] for r in split['rows']):.2f}** |")
    if slow and fast:
        added = sum(slow.values()) - sum(fast.values())
        total += f" **{sum(fast.values()):.2f}** | **{sum(slow.values()):.2f}** |"
        lines += [total, "",
                  f"The last two columns are whole uploads of {small:g} GiB (CPU-s, start-up "
                  "included): straight to the sink, and through the tls-slow link (200 Mbit/s, "
                  "50 ms). Both copy, checksum and encrypt the same bytes; through the slow link "
                  f"the upload cost {added:+.2f} CPU-s ({added / sum(fast.values()):+.0%}). "
                  "These are single runs: differences of a few tenths of a CPU-second are "
                  "within this machine's run-to-run noise."]
        return lines
    return [*lines, total]
