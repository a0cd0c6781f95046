"""`notaryd demo`: a whole notarisation against the built-in local emulator.

It starts SeaweedFS (the S3 store) and the notary-service emulator on loopback, makes a
throwaway team API key, writes a sample .app bundle (its assets sparse or random, of the size you
choose), notarises it with progress bars and the real pipeline (bundle zipped like ditto, hashed
in the same pass, uploaded, accepted, ticket looked up while it "propagates", stapled), and
prints the verdict, the staple check, where the log is, and the Prometheus metrics it exported.
Nothing leaves this machine.
"""

from __future__ import annotations

import argparse
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from service import exit_codes
from service.settings import Settings

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    match = _SIZE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 512M, 2G, 1.5GiB)")
    number, unit = float(match.group(1)), match.group(2).upper()
    return int(number * 1024 ** " KMGT".index(unit or " "))


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser("demo", help="end-to-end run against the built-in local emulator",
                              description=__doc__)
    p.add_argument("--size", type=parse_size, default=parse_size("2G"),
                   help="size of the sample bundle's assets (default 2G)")
    p.add_argument("--content", choices=("random", "sparse"), default="random",
                   help="random (default): incompressible, like a real build, so every byte is "
                   "uploaded; sparse: instant and costs no disk, but zips to almost nothing")
    p.add_argument("--lossy", action="store_true",
                   help="put a faulty network (resets, 5xx, a stall) between notaryd and S3")
    p.add_argument("--put-object-only", action="store_true",
                   help="upload credentials that deny ListParts, Abort, HeadObject and GetObject")
    p.add_argument("--workdir", type=Path, help="keep everything here instead of a temp dir")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from dataclasses import replace

    from service.emulator.world import EmulatedWorld

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="notaryd-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"notaryd demo: working in {workdir}")
    try:
        with EmulatedWorld(_world_config(args, workdir)) as world:
            key = world.team_key(workdir / "keys")
            world.call(lambda e: setattr(e.tickets, "propagation_seconds", 8.0))
            if args.put_object_only:
                print("notaryd demo: upload credentials allow only the PutObject family")
            emulator = world.emulator
            print(f"notaryd demo: notary emulator at {emulator.api_url}, "
                  f"S3 at {emulator.s3_endpoint_url}")
            if world.proxy is not None:
                print(f"notaryd demo: lossy network in front of S3 at {world.s3_url}")
            bundle = _write_sample(workdir, args)
            demo_settings = replace(
                settings, key_id=key.key_id, issuer_id=key.issuer_id, private_key=key.path,
                api_url=emulator.api_url, s3_endpoint_url=world.s3_url, s3_accelerate=False,
                ticket_url=emulator.ticket_url, state_dir=workdir / "state", stall_timeout=10.0,
                poll_initial=1.0, poll_max=5.0,
            )
            return _notarize(demo_settings, bundle, args)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir / "seaweedfs", ignore_errors=True)


def _world_config(args: argparse.Namespace, workdir: Path) -> Any:
    from service.emulator.config import EmulatorConfig
    from service.emulator.faultplan import FaultPlan
    from service.emulator.world import WorldConfig

    lossy = FaultPlan(reset=0.1, internal_error=0.05, slow_down=0.03, stall=0.02,
                      stall_seconds=120, seed=int(time.time()))
    return WorldConfig(emulator=EmulatorConfig(processing_delay_seconds=5.0),
                       faults=lossy if args.lossy else None, data_dir=workdir / "seaweedfs",
                       put_object_only=args.put_object_only)


def _write_sample(workdir: Path, args: argparse.Namespace) -> Path:
    from service.emulator.sample_app import make_sample_app
    from service.progress import human_bytes

    bundle = workdir / "build" / "NotarydDemo.app"
    print(f"notaryd demo: writing {bundle.name} with {human_bytes(args.size)} of "
          f"{args.content} assets")
    make_sample_app(bundle.parent, "NotarydDemo", big_file_bytes=args.size)
    if args.content == "random":
        _fill_random(bundle / "Contents" / "Resources" / "assets.pak", args.size)
    (bundle / "Contents" / "CodeResources").unlink(missing_ok=True)  # a re-run staples anew
    return bundle


def _notarize(settings: Settings, bundle: Path, args: argparse.Namespace) -> int:
    """The real pipeline with progress bars and Prometheus metrics; prints what it did."""
    from prometheus_client import start_http_server

    from service import runtime
    from service.commands.notary import print_outcome
    from service.daemon.metrics import DaemonMetrics
    from service.progress import ProgressDisplay, human_bytes
    from uploader.database import Database
    from uploader.notary.pipeline import Notarizer, NotarizeRequest
    from uploader.staple.check import check_staple

    config = settings.notary_config()
    metrics = DaemonMetrics()
    server, _thread = start_http_server(0, addr="127.0.0.1", registry=metrics.registry)
    print(f"notaryd demo: Prometheus metrics at http://127.0.0.1:{server.server_port}/metrics")

    async def notarize() -> Any:
        db = await Database.open(settings.database_path)
        with ProgressDisplay(plain_interval_seconds=2.0) as display:
            notarizer = Notarizer(db, config, hooks=[display, metrics])
            try:
                # The sample is signed ad hoc, not with a Developer ID: preflight would stop it.
                return await notarizer.run(NotarizeRequest(bundle, skip_preflight=True))
            finally:
                await notarizer.close()
                await db.close()

    started = time.monotonic()
    outcome = runtime.run(notarize())
    elapsed = time.monotonic() - started
    print_outcome(outcome, as_json=False, waited=True)
    uploaded = metrics.registry.get_sample_value("notaryd_upload_bytes_total") or 0.0
    print(f"notaryd demo: a bundle with {human_bytes(args.size)} of {args.content} assets "
          f"(zipped to {human_bytes(uploaded)}) notarised in {elapsed:.1f} s, including the "
          "emulator's processing delay and ticket propagation")
    for line in metrics.render().decode().splitlines():
        if line.startswith(("notaryd_upload_bytes_total", "notaryd_upload_resent_bytes_total",
                            "notaryd_part_retries_total{", "notaryd_notary_requests_total{")):
            print(f"  {line}")
    if outcome.accepted:
        print(f"notaryd demo: staple --check: {check_staple(bundle).message}")
    print(f"notaryd demo: state database and logs in {settings.state_dir}")
    server.shutdown()
    if outcome.staple is not None and outcome.staple.failed:
        return exit_codes.ACCEPTED_NOT_STAPLED
    return exit_codes.for_status(outcome.status)


def _fill_random(path: Path, size: int) -> None:
    import os

    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, 8 << 20))
            f.write(block)
            left -= len(block)
