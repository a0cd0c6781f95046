"""The benchmark loop: every tool, every condition, every size, several runs, one sink.

For each run the tool uploads the source file to a fresh key; the run succeeds only if the tool
exits 0 within the condition's timeout *and* the sink holds an object of the right size whose
CRC32C (combined from the parts in completion order) equals the source file's. ``notaryd`` may be
re-run after a non-zero exit when the condition allows it (it resumes from its state dir); the
re-runs count as the same attempt, their wall and CPU time are added up, and the record says how
many there were. Tools run in turn within each repetition, in an order rotated from one
repetition to the next, so drift (page cache, thermal, other load) is spread evenly. The ``tls``
condition gets its own sink process serving HTTPS with a certificate from a CA generated for
the run; every tool is told to trust that CA (``Target.ca_bundle``). Wire bytes come from the fault proxy's counters when it has them, otherwise from
the sink's count of request-body bytes received (framing included).
"""

from __future__ import annotations

import os
import platform
import shlex
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.crc32c import cached_file_crc32c
from benchmarks.datafile import ensure_source, kind_for
from benchmarks.measure import ProcessCost, run_measured
from benchmarks.peers import Peer, PeersVenv, Target, all_peers
from benchmarks.plan import Condition, Plan
from benchmarks.services import LinkProcess, ShaperProcess, SinkProcess
from benchmarks.tls import generate as generate_tls

BUCKET = "bench"


@dataclass(frozen=True)
class RunRecord:
    condition: str
    size: int
    tool: str
    run: int
    success: bool
    verdict: str  # "ok", "exit N", "timeout", "wrong bytes", "no object"
    attempts: int  # 1 + notaryd re-runs
    wall_seconds: float
    cpu_seconds: float
    peak_rss_bytes: int
    wire_bytes: int
    wire_source: str  # "proxy" or "sink"
    sink_cpu_seconds: float
    error: str
    wakeups: int = 0  # voluntary context switches of the tool's processes (ru_nvcsw)


def machine_description() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    os_name = platform.platform()
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"') + f" (kernel {platform.release()})"
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": mem,
        "os": os_name,
        "python": platform.python_version(),
    }


def measure_sink_ceiling(sink: SinkProcess, workdir: Path, total_bytes: int) -> dict[str, Any]:
    """The sink's own ceiling: curl PUTs of ``total_bytes`` over 8 parallel streams."""
    curl = shutil.which("curl")
    streams = 8
    if curl is None:
        return {"error": "curl not found; sink ceiling not measured"}
    piece = ensure_source(workdir / "data", total_bytes // streams)
    trust = ["--cacert", str(sink.ca_bundle)] if sink.ca_bundle is not None else []
    results = []
    for attempt in range(3):
        cpu_before = sink.cpu_seconds()
        start = time.monotonic()
        procs = [
            subprocess.Popen(
                [curl, "-sS", "-o", "/dev/null", *trust, "-T", str(piece),
                 f"{sink.url}/{BUCKET}/ceiling-{attempt}-{i}"],
                stdin=subprocess.DEVNULL,
            )
            for i in range(streams)
        ]
        codes = [p.wait() for p in procs]
        wall = time.monotonic() - start
        if any(codes):
            return {"error": f"curl exit codes {codes}"}
        results.append((wall, sink.cpu_seconds() - cpu_before))
    wall, cpu = sorted(results)[len(results) // 2]
    return {
        "bytes": piece.stat().st_size * streams,
        "streams": streams,
        "wall_seconds": wall,
        "mib_per_second": piece.stat().st_size * streams / wall / 2**20,
        "sink_cpu_seconds_per_gib": cpu / (piece.stat().st_size * streams / 2**30),
        "client": "curl -T (PutObject), 8 processes"
        + (", HTTPS" if sink.ca_bundle is not None else ""),
    }


class Runner:
    def __init__(self, plan: Plan, workdir: Path, tools: tuple[str, ...] | None = None) -> None:
        self.plan = plan
        self.workdir = workdir
        self.venv = PeersVenv(workdir / "peers-venv")
        wanted = tools or plan.tools
        self.peers: list[Peer] = [p for p in all_peers(self.venv) if p.name in wanted]
        self.records: list[RunRecord] = []
        self.commands: dict[str, str] = {}
        self.ceilings: dict[str, dict[str, Any]] = {}

    def log(self, message: str) -> None:
        print(f"bench {time.strftime('%H:%M:%S')} {message}", flush=True)

    def run(self) -> dict[str, Any]:
        started = time.time()
        load_start = os.getloadavg()
        self.venv.ensure()
        data_dir = self.workdir / "data"
        sources = {}
        for size in self.plan.sizes:
            self.log(f"source file of {size / 2**20:.0f} MiB ({kind_for(size)})")
            path = ensure_source(data_dir, size)
            sources[size] = (path, cached_file_crc32c(path))
        logs = self.workdir / "logs"
        with SinkProcess(logs / "sink.log") as sink:
            self.log(f"sink on {sink.url}; measuring its ceiling")
            ceiling = measure_sink_ceiling(sink, self.workdir, self.plan.ceiling_bytes)
            self.log(f"sink ceiling: {ceiling}")
            self.ceilings["clean"] = ceiling
            for condition in self.plan.conditions:
                self._run_condition(condition, sink, sources, logs)
        return {
            "mode": self.plan.mode,
            "started": started,
            "finished": time.time(),
            "machine": machine_description(),
            # Other work on the machine skews loopback figures; the report shows it.
            "load_average": {"start": load_start[0], "end": os.getloadavg()[0]},
            "versions": {p.name: p.version() for p in self.peers},
            "tuning": asdict(self.plan.tuning),
            "conditions": [
                {
                    "name": c.name,
                    "description": c.describe(),
                    "sizes": list(c.sizes),
                    "runs": c.runs,
                    "timeout_seconds": c.timeout_seconds,
                    "notaryd_reruns": c.notaryd_reruns,
                    "tls": c.tls,
                    "link": asdict(c.link) if c.link is not None else None,
                }
                for c in self.plan.conditions
            ],
            "notes": list(self.plan.notes),
            "ceiling": ceiling,
            "ceiling_tls": self.ceilings.get("tls"),
            "commands": self.commands,
            "runs": [asdict(r) for r in self.records],
        }

    def _run_condition(
        self,
        condition: Condition,
        sink: SinkProcess,
        sources: dict[int, tuple[Path, int]],
        logs: Path,
    ) -> None:
        self.log(f"condition {condition.name}: {condition.describe()}")
        if condition.tls:
            # Its own sink process, over HTTPS with a CA generated for this run.
            tls = generate_tls(self.workdir / "tls")
            with SinkProcess(logs / f"sink-{condition.name}.log", tls=tls) as tls_sink:
                if "tls" not in self.ceilings:
                    self.ceilings["tls"] = measure_sink_ceiling(
                        tls_sink, self.workdir, self.plan.ceiling_bytes
                    )
                    self.log(f"HTTPS sink ceiling: {self.ceilings['tls']}")
                if condition.link is None:
                    self._run_cells(condition, tls_sink, None, tls_sink.url, sources, logs)
                    return
                with LinkProcess(
                    condition.link, tls_sink, logs / f"link-{condition.name}.log"
                ) as link:
                    self._run_cells(condition, tls_sink, None, link.url, sources, logs)
            return
        if condition.shaping is None:
            self._run_cells(condition, sink, None, sink.url, sources, logs)
            return
        with ShaperProcess(
            condition.shaping, sink.url, logs / f"proxy-{condition.name}.log"
        ) as proxy:
            self._run_cells(condition, sink, proxy, proxy.url, sources, logs)

    def _run_cells(
        self,
        condition: Condition,
        sink: SinkProcess,
        proxy: ShaperProcess | None,
        endpoint: str,
        sources: dict[int, tuple[Path, int]],
        logs: Path,
    ) -> None:
        for size in condition.sizes:
            source, crc = sources[size]
            for run in range(condition.runs):
                # Rotate the order each repetition: no tool always runs first (cold) or last.
                shift = run % len(self.peers)
                for peer in self.peers[shift:] + self.peers[:shift]:
                    record = self._run_one(
                        condition, size, run, peer, sink, proxy, endpoint, source, crc, logs
                    )
                    self.records.append(record)
                    rate = size / record.wall_seconds / 2**20 if record.wall_seconds else 0.0
                    self.log(
                        f"{condition.name} {size / 2**20:.0f}MiB #{run + 1} {peer.name}: "
                        f"{record.verdict} in {record.wall_seconds:.1f}s ({rate:.0f} MiB/s, "
                        f"cpu {record.cpu_seconds:.1f}s, rss {record.peak_rss_bytes / 2**20:.0f} "
                        f"MiB, attempts {record.attempts})"
                        + (f" -- {record.error}" if not record.success else "")
                    )

    def _wire_counter(self, sink: SinkProcess, proxy: ShaperProcess | None) -> tuple[int, str]:
        if proxy is not None:
            stats = proxy.stats()
            if stats is not None and "request_body_bytes_received" in stats:
                return int(stats["request_body_bytes_received"]), "proxy"
        return int(sink.stats()["body_bytes"]), "sink"

    def _run_one(
        self,
        condition: Condition,
        size: int,
        run: int,
        peer: Peer,
        sink: SinkProcess,
        proxy: ShaperProcess | None,
        endpoint: str,
        source: Path,
        crc: int,
        logs: Path,
    ) -> RunRecord:
        name = f"{condition.name}-{size // 2**20}MiB-{run + 1}-{peer.name}"
        workdir = self.workdir / "runs" / name
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        target = Target(endpoint, BUCKET, f"{name}-{time.time_ns()}", sink.ca_bundle)
        invocation = peer.invocation(source, target, self.plan.tuning, workdir)
        self.commands.setdefault(peer.name, shlex.join(invocation.argv))
        wire_before, wire_source = self._wire_counter(sink, proxy)
        sink_cpu_before = sink.cpu_seconds()
        costs: list[ProcessCost] = []
        deadline = time.monotonic() + condition.timeout_seconds
        while True:
            left = max(1.0, deadline - time.monotonic())
            cost = run_measured(invocation.argv, invocation.env, left, logs / f"{name}.log")
            costs.append(cost)
            retry = (
                peer.name == "notaryd"
                and cost.exit_code != 0
                and not cost.timed_out
                and len(costs) <= condition.notaryd_reruns
                and time.monotonic() < deadline
            )
            if not retry:
                break
        wire_after, _ = self._wire_counter(sink, proxy)
        last = costs[-1]
        stored = sink.stored_object(BUCKET, target.key)
        if last.timed_out:
            verdict = "timeout"
        elif last.exit_code != 0:
            verdict = f"exit {last.exit_code}"
        elif stored is None:
            verdict = "no object"
        elif stored["size"] != size or stored["crc32c"] != crc:
            verdict = "wrong bytes"
        else:
            verdict = "ok"
        shutil.rmtree(workdir, ignore_errors=True)
        return RunRecord(
            condition=condition.name,
            size=size,
            tool=peer.name,
            run=run + 1,
            success=verdict == "ok",
            verdict=verdict,
            attempts=len(costs),
            wall_seconds=sum(c.wall_seconds for c in costs),
            cpu_seconds=sum(c.cpu_seconds for c in costs),
            peak_rss_bytes=max(c.peak_rss_bytes for c in costs),
            wire_bytes=wire_after - wire_before,
            wire_source=wire_source,
            sink_cpu_seconds=sink.cpu_seconds() - sink_cpu_before,
            error="" if verdict == "ok" else last.stderr_tail,
            wakeups=sum(c.wakeups for c in costs),
        )
