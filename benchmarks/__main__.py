"""``python -m benchmarks [--quick]``: run everything and rewrite RESULTS.md and results.png.

Steps: create/reuse the peers' venv; generate/reuse the source files; start the sink and
measure its ceiling; run every tool under every condition; run the hashing micro-benchmark;
profile one clean notaryd upload with py-spy; write ``results.json``, ``RESULTS.md`` and
``results.png`` next to this file (or into ``--out``).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.analysis import explain
from benchmarks.datafile import ensure_source
from benchmarks.hashbench import run_hashbench
from benchmarks.peers import Notaryd, Target
from benchmarks.plan import Plan, full_plan, quick_plan
from benchmarks.profile import profile_run
from benchmarks.report import evaluate, render_chart, render_markdown
from benchmarks.runner import BUCKET, Runner
from benchmarks.services import SinkProcess

HERE = Path(__file__).resolve().parent


def _profile(plan: Plan, workdir: Path) -> dict[str, Any]:
    size = min(plan.conditions[0].sizes)
    source = ensure_source(workdir / "data", size)
    run_dir = workdir / "runs" / "profile"
    run_dir.mkdir(parents=True, exist_ok=True)
    with SinkProcess(workdir / "logs" / "sink-profile.log") as sink:
        invocation = Notaryd().invocation(
            source, Target(sink.url, BUCKET, "profile"), plan.tuning, run_dir
        )
        result = profile_run(invocation, run_dir, timeout_seconds=600)
    result["size"] = size
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small files, < 5 minutes")
    parser.add_argument("--tools", help="comma-separated subset of notaryd,s5cmd,aws-cli,boto3")
    parser.add_argument("--conditions", help="comma-separated subset of the plan's conditions")
    parser.add_argument("--runs", type=int, help="override runs per cell")
    parser.add_argument("--out", type=Path, default=HERE, help="where RESULTS.md etc. go")
    parser.add_argument("--workdir", type=Path, default=HERE / ".work")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument(
        "--render-only", action="store_true",
        help="re-render RESULTS.md and results.png from the existing results.json (no runs)",
    )
    args = parser.parse_args(argv)
    if args.render_only:
        results = json.loads((args.out / "results.json").read_text())
        _write_outputs(results, args.out)
        return 0

    plan = quick_plan() if args.quick else full_plan()
    if args.conditions:
        wanted = set(args.conditions.split(","))
        plan = replace(plan, conditions=tuple(c for c in plan.conditions if c.name in wanted))
    if args.runs:
        plan = replace(plan, conditions=tuple(replace(c, runs=args.runs) for c in plan.conditions))
    tools = tuple(args.tools.split(",")) if args.tools else None
    args.workdir.mkdir(parents=True, exist_ok=True)

    results = Runner(plan, args.workdir, tools).run()
    print("bench: hashing micro-benchmark", flush=True)
    try:
        hash_source = ensure_source(args.workdir / "data", plan.hash_size)
        results["hash"] = run_hashbench(hash_source, plan.tuning.part_size)
    except Exception as exc:  # report it rather than lose the whole run
        results["hash"] = {"error": f"{type(exc).__name__}: {exc}"}
    if not args.no_profile:
        print("bench: profiling one clean notaryd upload with py-spy", flush=True)
        results["profile"] = _profile(plan, args.workdir)
    _write_outputs(results, args.out)
    return 0


def _write_outputs(results: dict[str, Any], out: Path) -> None:
    results["analysis"] = explain(evaluate(results), results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "RESULTS.md").write_text(render_markdown(results))
    render_chart(results, out / "results.png")
    for target in evaluate(results):
        print(f"bench: {target.verdict:6} {target.name}: {target.measured}")
    print(f"bench: wrote {out / 'RESULTS.md'} and {out / 'results.png'}")


if __name__ == "__main__":
    sys.exit(main())
