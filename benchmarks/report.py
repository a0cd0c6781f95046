"""RESULTS.md and results.png from one run's results (``results.json``); never edited by hand.

Medians are over successful runs (a failed run has no meaningful throughput); failure counts
are reported next to them. Ratios compare notaryd with each peer *within the same run*.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GiB = 2**30
MiB = 2**20
TOOLS = ("notaryd", "s5cmd", "aws-cli", "boto3", "boto3-crt")
PEERS = TOOLS[1:]


@dataclass(frozen=True)
class Cell:
    condition: str
    size: int
    tool: str
    runs: int
    ok: int
    wall: float | None
    mib_s: float | None
    cpu_per_gib: float | None
    rss_mib: float | None
    wire_ratio: float | None
    attempts: int
    verdicts: tuple[str, ...]
    wakeups_per_gib: float | None = None  # voluntary context switches per GiB (ru_nvcsw)

    @property
    def failures(self) -> int:
        return self.runs - self.ok


def _median(values: Iterable[float]) -> float | None:
    items = list(values)
    return statistics.median(items) if items else None


def cells(results: dict[str, Any]) -> dict[tuple[str, int, str], Cell]:
    grouped: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for run in results["runs"]:
        grouped.setdefault((run["condition"], run["size"], run["tool"]), []).append(run)
    out = {}
    for (condition, size, tool), runs in grouped.items():
        good = [r for r in runs if r["success"]]
        out[(condition, size, tool)] = Cell(
            condition=condition,
            size=size,
            tool=tool,
            runs=len(runs),
            ok=len(good),
            wall=_median(r["wall_seconds"] for r in good),
            mib_s=_median(size / r["wall_seconds"] / MiB for r in good),
            cpu_per_gib=_median(r["cpu_seconds"] / (size / GiB) for r in good),
            rss_mib=_median(r["peak_rss_bytes"] / MiB for r in good),
            wire_ratio=_median(r["wire_bytes"] / size for r in good),
            attempts=sum(r["attempts"] for r in runs) - len(runs),
            verdicts=tuple(r["verdict"] for r in runs if not r["success"]),
            wakeups_per_gib=_median(
                r["wakeups"] / (size / GiB) for r in good if r.get("wakeups")
            ),
        )
    return out


@dataclass(frozen=True)
class Marginal:
    """Rates between two sizes: what each extra GiB costs, start-up excluded."""

    tool: str
    mib_s: float
    cpu_per_gib: float
    fixed_seconds: float  # wall time left over at size 0: start-up, planning, completion


def marginals(results: dict[str, Any], condition: str = "clean") -> list[Marginal]:
    table = cells(results)
    sizes = sorted({s for (c, s, _) in table if c == condition})
    if len(sizes) < 2:
        return []
    small_size, large_size = sizes[0], sizes[-1]
    out = []
    for tool in TOOLS:
        small = table.get((condition, small_size, tool))
        large = table.get((condition, large_size, tool))
        if not small or not large or small.wall is None or large.wall is None:
            continue
        if small.cpu_per_gib is None or large.cpu_per_gib is None:
            continue
        extra_wall = large.wall - small.wall
        extra_gib = (large_size - small_size) / GiB
        if extra_wall <= 0:
            continue
        extra_cpu = large.cpu_per_gib * large_size / GiB - small.cpu_per_gib * small_size / GiB
        rate = (large_size - small_size) / extra_wall / MiB
        out.append(Marginal(tool, rate, extra_cpu / extra_gib,
                            small.wall - small_size / MiB / rate))
    return out


def _f(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _size(size: int) -> str:
    return f"{size / GiB:g} GiB" if size >= GiB else f"{size / MiB:g} MiB"


@dataclass(frozen=True)
class Target:
    name: str
    measured: str
    verdict: str  # "met", "MISSED", "n/a"
    why: str = ""


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _against_every_peer(
    table: dict[tuple[str, int, str], Cell], condition: str, size: int
) -> list[Target]:
    """Issue 9's targets: faster than the fastest peer, ≤ 0.6 x the thriftiest peer's CPU."""
    n = table.get((condition, size, "notaryd"))
    peers = [table[(condition, size, p)] for p in PEERS if (condition, size, p) in table]
    fast = [p for p in peers if p.mib_s is not None]
    thrifty = [p for p in peers if p.cpu_per_gib is not None]
    where = f"{condition} {_size(size)}"
    if n is None or n.mib_s is None or n.cpu_per_gib is None or not fast or not thrifty:
        return [Target(f"{where}: throughput ≥ every peer", "—", "n/a"),
                Target(f"{where}: CPU/GiB ≤ 0.6 x thriftiest peer", "—", "n/a")]
    best = max(fast, key=lambda c: c.mib_s or 0.0)
    least = min(thrifty, key=lambda c: c.cpu_per_gib or 0.0)
    speed = n.mib_s / (best.mib_s or 1.0)
    cpu = n.cpu_per_gib / (least.cpu_per_gib or 1.0)
    return [
        Target(
            f"{where}: throughput ≥ every peer",
            f"{speed:.2f} x {best.tool} ({n.mib_s:.0f} vs {best.mib_s:.0f} MiB/s)",
            "met" if speed >= 1.0 else "MISSED",
        ),
        Target(
            f"{where}: CPU/GiB ≤ 0.6 x thriftiest peer",
            f"{cpu:.2f} x {least.tool} ({n.cpu_per_gib:.2f} vs {least.cpu_per_gib:.2f} CPU-s/GiB)",
            "met" if cpu <= 0.6 else "MISSED",
        ),
    ]


LINK_CONDITIONS = ("tls-shaped", "tls-slow")  # HTTPS over a TCP-level link (issue 19)


def _slow_link_targets(table: dict[tuple[str, int, str], Cell]) -> list[Target]:
    """Issue 19: notaryd's CPU per GiB at 200 Mbit/s within 1.5 x its own on the fast HTTPS
    sink (same size; the plain sink when the run had no ``tls`` cell of that size)."""
    out = []
    for size in sorted({s for (c, s, _) in table if c == "tls-slow"}):
        slow = table.get(("tls-slow", size, "notaryd"))
        fast = table.get(("tls", size, "notaryd")) or table.get(("clean", size, "notaryd"))
        r = _ratio(slow.cpu_per_gib if slow else None, fast.cpu_per_gib if fast else None)
        out.append(Target(
            f"tls-slow {_size(size)}: notaryd CPU/GiB ≤ 1.5 x its own on the fast sink",
            "—" if r is None or fast is None or slow is None else
            f"{r:.2f} x ({_f(slow.cpu_per_gib, 2)} vs {_f(fast.cpu_per_gib, 2)} CPU-s/GiB "
            f"in {fast.condition})",
            "n/a" if r is None else ("met" if r <= 1.5 else "MISSED"),
        ))
    return out


def _wakeups(cell: Cell) -> str:
    return "—" if cell.wakeups_per_gib is None else f"{cell.wakeups_per_gib / 1000:.1f} k"


def evaluate(results: dict[str, Any]) -> list[Target]:
    table = cells(results)
    targets: list[Target] = []
    clean_sizes = sorted({s for (c, s, _) in table if c == "clean"})
    for size in clean_sizes:
        n = table.get(("clean", size, "notaryd"))
        for peer, want in (("s5cmd", 1.0), ("aws-cli", 1.5)):
            p = table.get(("clean", size, peer))
            r = _ratio(n.mib_s if n else None, p.mib_s if p else None)
            targets.append(Target(
                f"clean {_size(size)}: throughput ≥ {want:g} x {peer}",
                "—" if r is None else f"{r:.2f} x ({_f(n.mib_s if n else None, 0)} vs "
                f"{_f(p.mib_s if p else None, 0)} MiB/s)",
                "n/a" if r is None else ("met" if r >= want else "MISSED"),
            ))
        a = table.get(("clean", size, "aws-cli"))
        r = _ratio(n.cpu_per_gib if n else None, a.cpu_per_gib if a else None)
        targets.append(Target(
            f"clean {_size(size)}: CPU/GiB ≤ 0.5 x aws-cli",
            "—" if r is None else f"{r:.2f} x ({_f(n.cpu_per_gib if n else None, 2)} vs "
            f"{_f(a.cpu_per_gib if a else None, 2)} CPU-s/GiB)",
            "n/a" if r is None else ("met" if r <= 0.5 else "MISSED"),
        ))
    for condition in ("clean", "tls", *LINK_CONDITIONS):
        for size in sorted({s for (c, s, _) in table if c == condition}):
            targets += _against_every_peer(table, condition, size)
    targets += _slow_link_targets(table)
    for condition in ("lossy", "hostile"):
        for size in sorted({s for (c, s, _) in table if c == condition}):
            n = table.get((condition, size, "notaryd"))
            if n is None:
                continue
            targets.append(Target(
                f"{condition} {_size(size)}: notaryd finishes 100 % with the right bytes",
                f"{n.ok}/{n.runs} (re-runs after a non-zero exit: {n.attempts})",
                "met" if n.ok == n.runs else "MISSED",
            ))
            finishers = [
                table[(condition, size, p)] for p in PEERS
                if (condition, size, p) in table and table[(condition, size, p)].mib_s is not None
            ]
            if not finishers:
                targets.append(Target(
                    f"{condition} {_size(size)}: throughput ≥ 2 x best finishing peer",
                    "no peer finished a run", "met" if n.ok else "MISSED"))
                continue
            best = max(finishers, key=lambda c: c.mib_s or 0.0)
            r = _ratio(n.mib_s, best.mib_s)
            targets.append(Target(
                f"{condition} {_size(size)}: throughput ≥ 2 x best finishing peer",
                "—" if r is None else f"{r:.2f} x {best.tool} ({_f(n.mib_s, 0)} vs "
                f"{_f(best.mib_s, 0)} MiB/s)",
                "n/a" if r is None else ("met" if r >= 2.0 else "MISSED"),
            ))
    if len(clean_sizes) >= 2:
        small = table.get(("clean", clean_sizes[0], "notaryd"))
        large = table.get(("clean", clean_sizes[-1], "notaryd"))
        r = _ratio(large.rss_mib if large else None, small.rss_mib if small else None)
        targets.append(Target(
            f"memory: peak RSS at {_size(clean_sizes[-1])} within 10 % of "
            f"{_size(clean_sizes[0])}",
            "—" if r is None else f"{r:.2f} x ({_f(large.rss_mib if large else None, 0)} vs "
            f"{_f(small.rss_mib if small else None, 0)} MiB)",
            "n/a" if r is None else ("met" if r <= 1.10 else "MISSED"),
        ))
    else:
        targets.append(Target("memory: peak RSS at the largest size within 10 % of the smallest",
                              "only one clean size in this mode", "n/a"))
    hashing = results.get("hash") or {}
    if "ratio" in hashing:
        targets.append(Target(
            "hashing pass ≥ 0.9 x plain hashlib SHA-256",
            f"{hashing['ratio']:.2f} x ({hashing['notaryd']['mib_per_second']:.0f} vs "
            f"{hashing['hashlib']['mib_per_second']:.0f} MiB/s)",
            "met" if hashing["ratio"] >= 0.9 else "MISSED",
        ))
    else:
        targets.append(Target("hashing pass ≥ 0.9 x plain hashlib SHA-256",
                              str(hashing.get("error", "not run")), "n/a"))
    return targets


def render_markdown(results: dict[str, Any], chart_name: str = "results.png") -> str:
    table = cells(results)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(results["started"]))
    took = (results["finished"] - results["started"]) / 60
    quick = results["mode"] == "quick"
    arguments = results.get("arguments") or (["--quick"] if quick else [])
    command = " ".join(["python -m benchmarks", *arguments])
    extra = " ".join(a for a in arguments if a != "--quick")
    make = f"make bench{'-quick' if quick else ''}" + (f" BENCH_ARGS='{extra}'" if extra else "")
    lines = [
        "# notaryd upload benchmarks",
        "",
        f"Generated by `{command}` (`{make}`)"
        f" on {when}, in {took:.1f} min. **Do not edit by hand**: the command rewrites this file "
        f"and `{chart_name}`; raw per-run data is in `results.json`.",
        "",
        f"Mode: **{results['mode']}**. " + " ".join(results.get("notes", [])),
        "",
        "## Machine",
        "",
    ]
    for key, value in results["machine"].items():
        lines.append(f"- {key}: {value}")
    load = results.get("load_average")
    if load:
        lines.append(
            f"- 1-minute load average: {load['start']:.2f} at start, {load['end']:.2f} at end "
            "(anything above ~0 means other processes shared the cores with client and sink)"
        )
    lines += ["", "## Tools and exact commands", ""]
    tuning = results["tuning"]
    lines.append(
        f"Same tuning for every tool: part size {tuning['part_size'] // MiB} MiB, concurrency "
        f"{tuning['concurrency']} (notaryd's stall timeout {tuning['stall_timeout_seconds']:g} s; "
        "the peers keep their own retry defaults). Credentials are dummies; the sink checks no "
        "signatures."
    )
    lines.append("")
    for tool, version in results["versions"].items():
        lines.append(f"- **{tool}** ({version}): `{results['commands'].get(tool, '(not run)')}`")
    lines += [
        "",
        "aws-cli's part size and concurrency come from `AWS_CONFIG_FILE` (`s3.multipart_chunksize`,"
        " `s3.max_concurrent_requests`); boto3 runs `upload_file` with a `TransferConfig` in its "
        "own process (`benchmarks/peer_boto3.py`); boto3-crt is the same `TransferConfig` with "
        "`preferred_transfer_client=\"crt\"` on s3transfer's `CRTTransferManager` (aws-c-s3, as "
        "in aws-cli v2), where `max_concurrency` caps the CRT's active connections. Over HTTPS "
        "every tool verifies the sink's certificate against the run's generated CA, named in "
        "`AWS_CA_BUNDLE`.",
        "",
        "## Conditions",
        "",
        "| condition | what | sizes | runs | timeout per run | notaryd re-runs allowed |",
        "|---|---|---|---|---|---|",
    ]
    for c in results["conditions"]:
        lines.append(
            f"| {c['name']} | {c['description']} | {', '.join(_size(s) for s in c['sizes'])} | "
            f"{c['runs']} | {c['timeout_seconds']:g} s | {c['notaryd_reruns']} |"
        )
    lines += [
        "",
        "Shaping and faults come from `service.emulator.faultproxy` in front of the sink "
        "(faults hit UploadPart, CreateMultipartUpload and CompleteMultipartUpload; the 5xx share "
        "is split between 500 InternalError, 503 SlowDown and 400 RequestTimeout; latency is "
        "added once per request; the bandwidth cap is on request bodies, shared by all "
        "connections). A run succeeds only when the tool exits 0 and the sink holds an object of "
        "the right size whose CRC32C (combined from the parts in completion order) equals the "
        "source file's.",
        "",
        "## Sink ceiling",
        "",
    ]
    ceiling = results.get("ceiling", {})
    if "mib_per_second" in ceiling:
        lines.append(
            f"{ceiling['client']}: {ceiling['bytes'] / GiB:g} GiB in {ceiling['wall_seconds']:.2f} s"
            f" = **{ceiling['mib_per_second']:.0f} MiB/s**, sink CPU "
            f"{ceiling['sink_cpu_seconds_per_gib']:.2f} s/GiB (client and sink share the same "
            f"{results['machine']['cores']} cores)."
        )
    else:
        lines.append(f"not measured: {ceiling.get('error', 'unknown')}")
    tls_ceiling = results.get("ceiling_tls") or {}
    if "mib_per_second" in tls_ceiling:
        lines += ["", f"Over HTTPS ({tls_ceiling['client']}): {tls_ceiling['mib_per_second']:.0f} "
                  f"MiB/s, sink CPU {tls_ceiling['sink_cpu_seconds_per_gib']:.2f} s/GiB."]
    lines += ["", "## Targets (ratios measured in this run)", "",
              "| target | measured | verdict |", "|---|---|---|"]
    for t in evaluate(results):
        lines.append(f"| {t.name} | {t.measured} | {t.verdict} |")
    lines += ["", "## Results", "", f"![results]({chart_name})", ""]
    for c in results["conditions"]:
        for size in c["sizes"]:
            lines += [
                f"### {c['name']}, {_size(size)} ({c['description']})",
                "",
                "| tool | ok / runs | median wall s | median MiB/s | CPU-s per GiB | wake-ups per "
                "GiB | peak RSS MiB | wire ÷ size | notaryd re-runs | failures |",
                "|---|---|---|---|---|---|---|---|---|---|",
            ]
            for tool in TOOLS:
                cell = table.get((c["name"], size, tool))
                if cell is None:
                    continue
                lines.append(
                    f"| {tool} | {cell.ok} / {cell.runs} | {_f(cell.wall)} | {_f(cell.mib_s, 0)} |"
                    f" {_f(cell.cpu_per_gib, 2)} | {_wakeups(cell)} | {_f(cell.rss_mib, 0)} | "
                    f"{_f(cell.wire_ratio, 3)} | {cell.attempts if tool == 'notaryd' else ''} | "
                    f"{', '.join(cell.verdicts)} |"
                )
            n = table.get((c["name"], size, "notaryd"))
            ratio_bits = []
            for tool in PEERS:
                p = table.get((c["name"], size, tool))
                if n is None or p is None:
                    continue
                speed = _ratio(n.mib_s, p.mib_s)
                cpu = _ratio(n.cpu_per_gib, p.cpu_per_gib)
                ratio_bits.append(
                    f"vs {tool}: throughput {_f(speed, 2)} x, CPU/GiB {_f(cpu, 2)} x"
                )
            if ratio_bits:
                lines += ["", "notaryd " + "; ".join(ratio_bits) + ".", ""]
    steady = marginals(results)
    if steady:
        lines += [
            "### clean, steady state (marginal cost between the smallest and largest size)",
            "",
            "Start-up (interpreter, imports, client set-up) is paid once per run; these rates "
            "are what each additional GiB costs, and `fixed s` is the wall time left at size 0.",
            "",
            "| tool | marginal MiB/s | marginal CPU-s per GiB | fixed s |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {m.tool} | {m.mib_s:.0f} | {m.cpu_per_gib:.2f} | {m.fixed_seconds:.2f} |"
            for m in steady
        ]
        by_tool = {m.tool: m for m in steady}
        if "notaryd" in by_tool:
            ours = by_tool["notaryd"]
            bits = [
                f"vs {m.tool}: throughput {ours.mib_s / m.mib_s:.2f} x, CPU/GiB "
                f"{ours.cpu_per_gib / m.cpu_per_gib:.2f} x"
                for m in steady
                if m.tool != "notaryd" and m.mib_s > 0 and m.cpu_per_gib > 0
            ]
            lines += ["", "notaryd at steady state " + "; ".join(bits) + ".", ""]
    failed = [r for r in results["runs"] if not r["success"]]
    lines += ["## Failed runs", ""]
    if not failed:
        lines.append("none")
    for r in failed:
        lines.append(
            f"- {r['condition']} {_size(r['size'])} #{r['run']} {r['tool']}: {r['verdict']} after "
            f"{r['wall_seconds']:.1f} s — `{r['error'][:300]}`"
        )
    lines += ["", "## Hashing pass", ""]
    hashing = results.get("hash") or {}
    if "ratio" in hashing:
        lines.append(
            f"{hashing['bytes'] / MiB:.0f} MiB file in the page cache, best of "
            f"{hashing['repeats']}: plain `hashlib.sha256` "
            f"{hashing['hashlib']['mib_per_second']:.0f} MiB/s "
            f"({hashing['hashlib']['cpu_seconds_per_gib']:.2f} CPU-s/GiB); notaryd's pass "
            f"(SHA-256 + {hashing.get('algorithm', 'CRC32C')} per {hashing['part_size'] // MiB} "
            "MiB part) "
            f"{hashing['notaryd']['mib_per_second']:.0f} MiB/s "
            f"({hashing['notaryd']['cpu_seconds_per_gib']:.2f} CPU-s/GiB): ratio "
            f"**{hashing['ratio']:.2f}**."
        )
    else:
        lines.append(f"not measured: {hashing.get('error', 'not run')}")
    lines += _floor_section(results.get("floor") or {})
    lines += _profile_section(results.get("profile") or {}, "clean", "one clean upload")
    if "profile_tls" in results:
        lines += _profile_section(results["profile_tls"], "tls", "one upload over HTTPS")
    from benchmarks.linkreport import link_section  # it builds on this module's cells

    lines += link_section(results)
    analysis = results.get("analysis")
    if analysis:
        lines += ["", "## Misses: why, and what would close them", "", analysis]
    lines.append("")
    return "\n".join(lines)


def _floor_section(floor: dict[str, Any]) -> list[str]:
    lines = ["", "## Per-byte floor", ""]
    if "copy" not in floor:
        return [*lines, f"not measured: {floor.get('error', 'not run')}"]
    lines.append(
        f"One thread moving a {floor['bytes'] / MiB:.0f} MiB file from the page cache into a "
        "loopback socket (a second thread discards it), no HTTP, no checksum; CPU of the "
        f"sending thread, best of {floor['repeats']} (`benchmarks/floor.py`):"
    )
    lines += ["", "| how | CPU-s per GiB | MiB/s |", "|---|---|---|"]
    part = f"{floor['part_size'] // MiB} MiB"
    for key, how in (("copy", f"read() {part} into bytearrays + send()"),
                     ("copy_aligned", f"read() {part} into page-aligned buffers + send()"),
                     ("sendfile", "sendfile() (zero-copy)"),
                     ("tls_copy", "read() into bytearrays + send() over TLS (Python ssl, OpenSSL)"),
                     ("tls_copy_aligned", "read() into page-aligned buffers + send() over TLS")):
        row = floor.get(key)
        if row is None:  # results from before the aligned rows existed
            continue
        lines.append(f"| {how} | {row['cpu_seconds_per_gib']:.2f} | {row['mib_per_second']:.0f} |")
    return lines


def _profile_section(prof: dict[str, Any], condition: str, what: str) -> list[str]:
    lines = ["", f"## Profile of notaryd ({condition} condition)", ""]
    if "self" not in prof:
        return [*lines, f"not profiled: {prof.get('error', 'not run')}"]
    lines.append(
        f"py-spy, {prof['samples']} samples at 250 Hz over {what} of "
        f"{_size(prof.get('size', 0))} (native frames included). Top functions by own "
        "samples, then by samples anywhere in the stack:"
    )
    lines += ["", "| self % | function |", "|---|---|"]
    lines += [f"| {p:.1f} | `{f}` |" for f, p in prof["self"]]
    lines += ["", "| inclusive % | function |", "|---|---|"]
    lines += [f"| {p:.1f} | `{f}` |" for f, p in prof["inclusive"]]
    if prof.get("libraries"):
        busy = 100.0 * prof["busy_samples"] / prof["samples"] if prof["samples"] else 0.0
        lines += ["", f"Where the busy samples ({busy:.0f} % of all; the rest wait in a lock or "
                  "the poller) run, by library:", "", "| busy % | code in |", "|---|---|"]
        lines += [f"| {p:.1f} | {lib} |" for lib, p in prof["libraries"]]
    return lines


def render_chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = cells(results)
    conditions = results["conditions"]
    panels = [(c["name"], s) for c in conditions for s in c["sizes"]]
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 1.9 * len(panels)), 8))
    colours = {"notaryd": "#2a7ab0", "s5cmd": "#7a9a3a", "aws-cli": "#d9822b", "boto3": "#999999",
               "boto3-crt": "#8e5ea2"}
    width = 0.8 / len(TOOLS)
    for axis, metric, label in (
        (axes[0], "mib_s", "median throughput, MiB/s (x = no successful run)"),
        (axes[1], "cpu_per_gib", "median client CPU-seconds per GiB"),
    ):
        for i, tool in enumerate(TOOLS):
            xs, ys = [], []
            for j, key in enumerate(panels):
                cell = table.get((key[0], key[1], tool))
                value = getattr(cell, metric) if cell else None
                x = j + (i - (len(TOOLS) - 1) / 2) * width
                if value is None:
                    if cell is not None:
                        axis.text(x, 0, "x", ha="center", va="bottom", color=colours[tool])
                    continue
                xs.append(x)
                ys.append(value)
            axis.bar(xs, ys, width, label=tool, color=colours[tool])
        axis.set_xticks(range(len(panels)))
        axis.set_xticklabels([f"{c}\n{_size(s)}" for c, s in panels])
        axis.set_ylabel(label)
        axis.grid(axis="y", alpha=0.3)
    axes[0].set_ylim(top=axes[0].get_ylim()[1] * 1.15)  # room for the legend above the bars
    axes[0].legend(ncols=len(TOOLS), loc="upper right")
    axes[0].set_title(f"notaryd vs peers ({results['mode']} mode, {results['machine']['cpu']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
