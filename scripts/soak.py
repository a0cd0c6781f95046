"""Acceptance-style soak runs of `notaryd upload` (not part of the test-suite; minutes long).

    python scripts/soak.py hostile --size 2G   # resets 20 %, 5xx/RequestTimeout 10 %, stalls 5 % x 10 min
    python scripts/soak.py hostile --size 2G --outage-seconds 120 --outage-at 0.3
                                               # ... plus a 2-minute total outage at 30 %
    python scripts/soak.py kills --size 2G     # SIGKILL 5 times at random moments, then finish
    python scripts/soak.py rss --size 6G       # peak RSS of one clean upload at default settings

Each prints one JSON line of figures. Everything runs on loopback: the S3 part of the emulated
world (service/emulator/world.py: SeaweedFS, and the fault proxy for `hostile`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3

from service.commands.demo import parse_size
from service.emulator.faultplan import FaultPlan
from service.emulator.sample import make_sample_archive
from service.emulator.seaweed import SeaweedServer
from service.emulator.world import EmulatedWorld, WorldConfig

MiB = 1024 * 1024


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * MiB):
            h.update(chunk)
    return h.hexdigest()


def stored_sha256(server: SeaweedServer, bucket: str, key: str) -> str:
    body = boto3.client("s3", **server.client_kwargs()).get_object(Bucket=bucket, Key=key)["Body"]
    h = hashlib.sha256()
    for chunk in iter(lambda: body.read(8 * MiB), b""):
        h.update(chunk)
    return h.hexdigest()


def upload_command(path: Path, endpoint: str, bucket: str) -> list[str]:
    return [sys.executable, "-m", "service", "upload", str(path), "--bucket", bucket,
            "--key", "soak/archive.zip", "--endpoint-url", endpoint]


def env_for(world: EmulatedWorld, state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTARYD_", "AWS_"))}
    env.update(world.s3_environment(), NOTARYD_STATE_DIR=str(state))
    return env


def run_measured(command: list[str], env: dict[str, str]) -> tuple[int, float, int]:
    """Exit code, wall seconds, peak RSS in bytes (Linux ru_maxrss is KiB)."""
    started = time.monotonic()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    return os.waitstatus_to_exitcode(status), time.monotonic() - started, usage.ru_maxrss * 1024


def kill_and_resume(world: EmulatedWorld, archive: Path, state: Path) -> dict[str, object]:
    """SIGKILL `notaryd upload` 5 times at random moments, then let it finish."""
    env = env_for(world, state)
    rng = random.Random()
    kills = []
    for _ in range(5):
        proc = subprocess.Popen(upload_command(archive, world.s3_url, "soak"),
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(1.0, 4.0))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills.append(round(time.monotonic(), 1))
    code, _, _ = run_measured(upload_command(archive, world.s3_url, "soak"), env)
    with sqlite3.connect(state / "notaryd.sqlite3") as conn:
        resent = conn.execute("SELECT COALESCE(SUM((attempts-1)*length),0) FROM parts"
                              " WHERE attempts > 1").fetchone()[0]
        part = conn.execute("SELECT part_size FROM uploads").fetchone()[0]
    return dict(exit=code, kills=len(kills), resent_upper_bound_mib=round(resent / MiB, 1),
                allowed_mib=len(kills) * 9 * part / MiB)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("hostile", "kills", "rss"))
    parser.add_argument("--size", type=parse_size, default=parse_size("2G"))
    parser.add_argument("--content", default="random", choices=("random", "sparse"))
    parser.add_argument("--outage-seconds", type=float, default=0.0,
                        help="hostile: a total outage this long (every part request reset)")
    parser.add_argument("--outage-at", type=float, default=0.3,
                        help="hostile: start the outage once this fraction of the file was sent")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="notaryd-soak-"))
    archive = make_sample_archive(work / "archive.zip", args.size, content=args.content)
    expected = sha256_file(archive)
    hostile = FaultPlan(reset=0.2, internal_error=0.04, slow_down=0.03, request_timeout=0.03,
                        stall=0.05, stall_seconds=600, seed=11,
                        outage_after_bytes=int(args.size * args.outage_at),
                        outage_seconds=args.outage_seconds)
    world = EmulatedWorld(WorldConfig(emulator=None, data_dir=work / "seaweedfs",
                                      faults=hostile if args.mode == "hostile" else None))
    result: dict[str, object] = {"mode": args.mode, "size": args.size}
    try:
        with world:
            server = world.seaweed
            server.create_bucket("soak")
            if args.mode == "rss":
                code, seconds, rss = run_measured(upload_command(archive, world.s3_url, "soak"),
                                                  env_for(world, work / "state"))
                result.update(exit=code, seconds=round(seconds, 1), peak_rss_mib=round(rss / MiB, 1),
                              mib_per_s=round(args.size / MiB / seconds, 1))
            elif args.mode == "hostile":
                assert world.proxy is not None
                code, seconds, rss = run_measured(upload_command(archive, world.s3_url, "soak"),
                                                  env_for(world, work / "state"))
                stats = world.proxy.stats
                result.update(exit=code, seconds=round(seconds, 1), peak_rss_mib=round(rss / MiB, 1),
                              wire_ratio=round(stats.request_body_bytes_received / args.size, 3),
                              outage_seconds=args.outage_seconds,
                              outcomes=dict(stats.outcomes))
            else:
                result.update(kill_and_resume(world, archive, work / "state"))
            result["right_bytes"] = stored_sha256(server, "soak", "soak/archive.zip") == expected
    finally:
        subprocess.run(["rm", "-rf", str(work)], check=False)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
