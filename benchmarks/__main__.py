"""``python -m benchmarks [--quick]``: run everything and rewrite RESULTS.md and results.png.

Steps: create/reuse the peers' venv; generate/reuse the source files; start the sink and
measure its ceiling; run every tool under every condition; run the hashing micro-benchmark and
the per-byte floor (``benchmarks.floor``);
profile one clean notaryd upload with py-spy (and one over HTTPS when the plan has ``tls``, then
split its CPU over HTTPS by component with perf, ``benchmarks.costsplit``); write ``results.json``, ``RESULTS.md`` and
``results.png`` next to this file (or into ``--out``).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks import costsplit
from benchmarks.analysis import explain
from benchmarks.datafile import ensure_source
from benchmarks.floor import run_floor
from benchmarks.hashbench import run_hashbench
from benchmarks.peers import Notaryd, Target
from benchmarks.plan import Plan, full_plan, quick_plan
from benchmarks.profile import profile_run, syscall_counts
from benchmarks.report import evaluate, render_chart, render_markdown
from benchmarks.runner import BUCKET, Runner
from benchmarks.services import LinkProcess, SinkProcess
from benchmarks.tls import generate as generate_tls

HERE = Path(__file__).resolve().parent


def _profile(plan: Plan, workdir: Path, tls: bool = False) -> dict[str, Any]:
    """py-spy over one notaryd upload, over HTTPS when ``tls``: the smallest size of the
    (first) clean or tls condition, so start-up does not swamp the upload itself."""
    direct = [c for c in plan.conditions if c.shaping is None and c.tls == tls]
    size = min(direct[0].sizes) if direct else min(plan.sizes)
    source = ensure_source(workdir / "data", size)
    name = "profile-tls" if tls else "profile"
    run_dir = workdir / "runs" / name
    run_dir.mkdir(parents=True, exist_ok=True)
    files = generate_tls(workdir / "tls") if tls else None
    with SinkProcess(workdir / "logs" / f"sink-{name}.log", tls=files) as sink:
        target = Target(sink.url, BUCKET, name, sink.ca_bundle)
        invocation = Notaryd().invocation(source, target, plan.tuning, run_dir)
        result = profile_run(invocation, run_dir, timeout_seconds=600)
    result["size"] = size
    return result


def _profile_link(plan: Plan, workdir: Path, name: str) -> dict[str, Any]:
    """py-spy, then ``strace -c``, over one notaryd upload in link condition ``name`` (its
    smallest size): where CPU goes and how many wake-ups and writes when the receiver is slow."""
    condition = next(c for c in plan.conditions if c.name == name and c.link is not None)
    assert condition.link is not None
    size = min(condition.sizes)
    source = ensure_source(workdir / "data", size)
    run_dir = workdir / "runs" / f"profile-{name}"
    run_dir.mkdir(parents=True, exist_ok=True)
    files = generate_tls(workdir / "tls")
    logs = workdir / "logs"
    with SinkProcess(logs / f"sink-profile-{name}.log", tls=files) as sink, LinkProcess(
        condition.link, sink, logs / f"link-profile-{name}.log"
    ) as link:
        def invocation(key: str) -> Any:
            target = Target(link.url, BUCKET, key, sink.ca_bundle)
            return Notaryd().invocation(source, target, plan.tuning, run_dir)

        result = profile_run(invocation(f"profile-{name}"), run_dir, timeout_seconds=1800)
        result["syscalls"] = syscall_counts(invocation(f"strace-{name}"), run_dir, 1800)
    result["size"] = size
    result["condition"] = name
    return result


def _cost_split(plan: Plan, workdir: Path) -> dict[str, Any]:
    """``perf record`` over notaryd uploads over HTTPS at the tls condition's smallest and
    largest sizes: CPU per component, fixed and per GiB (``benchmarks.costsplit``)."""
    if costsplit.perf() is None:
        return {"error": "perf not installed (apt-get install linux-perf)"}
    condition = next(c for c in plan.conditions if c.tls and c.link is None)
    sizes = (min(condition.sizes), max(condition.sizes))
    if sizes[0] == sizes[1]:
        return {"error": "the tls condition has one size: nothing to split fixed from per GiB"}
    files = generate_tls(workdir / "tls")
    run_dir = workdir / "runs" / "cost-split"
    run_dir.mkdir(parents=True, exist_ok=True)
    slow = next((c for c in plan.conditions if c.name == "tls-slow" and c.link is not None), None)
    measured = []
    with SinkProcess(workdir / "logs" / "sink-cost-split.log", tls=files) as sink:
        def invocation(url: str, size: int) -> Any:
            target = Target(url, BUCKET, f"cost-split-{url.rsplit(':', 1)[-1]}-{size}",
                            sink.ca_bundle)
            return Notaryd().invocation(ensure_source(workdir / "data", size), target,
                                        plan.tuning, run_dir)

        for size in sizes:
            measured.append((size, costsplit.record(invocation(sink.url, size), run_dir,
                                                    f"{size}", 1800)))
        result = costsplit.split(measured[0], measured[1])
        if slow is not None and slow.link is not None:
            with LinkProcess(slow.link, sink, workdir / "logs" / "link-cost-split.log") as link:
                result["slow"] = costsplit.record(invocation(link.url, sizes[0]), run_dir,
                                                  f"slow-{sizes[0]}", 1800)
            result["fast_small"] = measured[0][1]
    return result


def _subset(plan: Plan, conditions: str | None, sizes: str | None) -> Plan:
    """The plan cut down to some conditions and sizes (MiB); RESULTS.md says so."""
    kept = plan.conditions
    if conditions:
        wanted = set(conditions.split(","))
        kept = tuple(c for c in kept if c.name in wanted)
    if sizes:
        mib = {int(s) * 2**20 for s in sizes.split(",")}
        kept = tuple(
            replace(c, sizes=tuple(s for s in c.sizes if s in mib)) for c in kept
        )
        kept = tuple(c for c in kept if c.sizes)
    if kept == plan.conditions:
        return plan
    note = "subset of the plan: " + "; ".join(
        f"{c.name} at {', '.join(f'{s / 2**30:g} GiB' for s in c.sizes)}" for c in kept
    ) + " (nothing else ran)."
    return replace(plan, conditions=kept, notes=(*plan.notes, note))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small files, < 5 minutes")
    parser.add_argument(
        "--tools", help="comma-separated subset of notaryd,s5cmd,aws-cli,boto3,boto3-crt"
    )
    parser.add_argument("--conditions", help="comma-separated subset of the plan's conditions")
    parser.add_argument("--sizes", help="comma-separated subset of the plan's sizes, in MiB")
    parser.add_argument("--runs", type=int, help="override runs per cell")
    parser.add_argument("--out", type=Path, default=HERE, help="where RESULTS.md etc. go")
    parser.add_argument("--workdir", type=Path, default=HERE / ".work")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument(
        "--note", action="append", default=[],
        help="a sentence for RESULTS.md's notes (e.g. what else ran on the machine)",
    )
    parser.add_argument(
        "--render-only", action="store_true",
        help="re-render RESULTS.md and results.png from the existing results.json (no runs)",
    )
    args = parser.parse_args(argv)
    if args.render_only:
        results = json.loads((args.out / "results.json").read_text())
        _write_outputs(results, args.out)
        return 0

    plan = _subset(quick_plan() if args.quick else full_plan(), args.conditions, args.sizes)
    if args.runs:
        plan = replace(plan, conditions=tuple(replace(c, runs=args.runs) for c in plan.conditions))
    if args.note:
        plan = replace(plan, notes=(*plan.notes, *args.note))
    tools = tuple(args.tools.split(",")) if args.tools else None
    args.workdir.mkdir(parents=True, exist_ok=True)

    results = Runner(plan, args.workdir, tools).run()
    results["arguments"] = list(argv if argv is not None else sys.argv[1:])
    print("bench: hashing micro-benchmark", flush=True)
    try:
        hash_source = ensure_source(args.workdir / "data", plan.hash_size)
        results["hash"] = run_hashbench(hash_source, plan.tuning.part_size)
    except Exception as exc:  # report it rather than lose the whole run
        results["hash"] = {"error": f"{type(exc).__name__}: {exc}"}
    print("bench: per-byte floor (read+send, sendfile, read+TLS send)", flush=True)
    try:
        floor_source = ensure_source(args.workdir / "data", min(plan.sizes))
        tls = generate_tls(args.workdir / "tls")
        results["floor"] = run_floor(floor_source, plan.tuning.part_size, tls)
    except Exception as exc:  # report it rather than lose the whole run
        results["floor"] = {"error": f"{type(exc).__name__}: {exc}"}
    if not args.no_profile:
        print("bench: profiling one clean notaryd upload with py-spy", flush=True)
        results["profile"] = _profile(plan, args.workdir)
        if any(c.tls for c in plan.conditions):
            print("bench: profiling one notaryd upload over HTTPS with py-spy", flush=True)
            results["profile_tls"] = _profile(plan, args.workdir, tls=True)
        if any(c.name == "tls-slow" for c in plan.conditions):
            print("bench: profiling (py-spy, strace -c) one notaryd upload in tls-slow", flush=True)
            results["profile_tls_slow"] = _profile_link(plan, args.workdir, "tls-slow")
        if any(c.tls and c.link is None for c in plan.conditions):
            print("bench: splitting notaryd's CPU over HTTPS by component with perf", flush=True)
            try:
                results["cost_split"] = _cost_split(plan, args.workdir)
            except Exception as exc:  # report it rather than lose the whole run
                results["cost_split"] = {"error": f"{type(exc).__name__}: {exc}"}
    _write_outputs(results, args.out)
    return 0


def _write_outputs(results: dict[str, Any], out: Path) -> None:
    results["analysis"] = explain(evaluate(results), results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "RESULTS.md").write_text(render_markdown(results) + _fleet_section(HERE / "FLEET.md"))
    render_chart(results, out / "results.png")
    for target in evaluate(results):
        print(f"bench: {target.verdict:6} {target.name}: {target.measured}")
    print(f"bench: wrote {out / 'RESULTS.md'} and {out / 'results.png'}")


def _fleet_section(fleet: Path) -> str:
    """FLEET.md's figures (measured by their own commands, which need a PostgreSQL) carried into
    every rewrite of RESULTS.md, its headings one level down."""
    if not fleet.is_file():
        return ""
    body = fleet.read_text(encoding="utf-8").replace("\n#", "\n##")
    return ("\n## The fleet store and its workers (from FLEET.md)\n\n###"
            + body.removeprefix("#") + "\n")


if __name__ == "__main__":
    sys.exit(main())
