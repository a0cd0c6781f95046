"""``python -m benchmarks.fleet_scale``: jobs per minute and Notary API requests per job with 1, 2
and 3 fleet workers on the same sink (SeaweedFS behind the notary emulator) and one PostgreSQL.

Each worker is a real ``notaryd serve`` (tests/support/daemon.py) with its own uplink, modelled
by ``NOTARYD_BANDWIDTH_LIMIT`` (on one 2-core machine the workers would otherwise share the same
CPUs and measure the machine, not the fleet). Every run submits the same jobs to worker 0 only;
the shared queue spreads them. Results go to stdout as JSON (figures: benchmarks/FLEET.md).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

JOBS = 12
SIZE = 16 * 1024 * 1024
UPLINK = 16 * 1024 * 1024  # bytes/s per worker


def _run(workers: int, root: Path, seaweed: Any, postgres: Any) -> dict[str, float]:
    from service.emulator.config import EmulatorConfig
    from service.emulator.notary import BackgroundEmulator, NotaryEmulator, backend_for
    # the suite's harness, loaded by name: mypy checks benchmarks, not the tests' helpers
    Daemon = importlib.import_module("tests.support.daemon").Daemon
    notary_env = importlib.import_module("tests.support.emulator").notary_env

    notary = BackgroundEmulator(lambda: NotaryEmulator(backend_for(seaweed), config=EmulatorConfig(processing_delay_seconds=0.3)))
    notary.start()
    shared = root / "builds"
    shared.mkdir(parents=True)
    env = {**notary_env(notary, root / "keys"), "NOTARYD_DATABASE_URL": postgres.create_database(),
           "NOTARYD_ALLOWED_ROOTS": str(shared), "NOTARYD_PART_SIZE": str(5 << 20), "NOTARYD_CONCURRENCY": "2",
           "NOTARYD_MAX_JOBS": "2", "NOTARYD_BANDWIDTH_LIMIT": str(UPLINK)}
    daemons = [Daemon(root / f"w{n}", fake=False, env={**env, "NOTARYD_WORKER_NAME": f"w{n}"}) for n in range(workers)]
    try:
        for d in daemons:
            d.start()
        paths = []
        for n in range(JOBS):
            path = shared / f"Build{n}.zip"
            with open(path, "wb") as f:
                f.write(os.urandom(1 << 20))
                f.truncate(SIZE)
            paths.append(path)
        started = time.monotonic()
        jobs = [daemons[0].submit(path, skip_preflight=True) for path in paths]
        ended = [daemons[0].wait_for(job["id"], "accepted", "failed", timeout=600) for job in jobs]
        took = time.monotonic() - started
        assert all(job["state"] == "accepted" for job in ended), ended
        requests = notary.call(lambda e: sum(e.requests.values()))
        return {"workers": workers, "seconds": round(took, 1), "jobs_per_minute": round(JOBS / took * 60, 1),
                "api_requests_per_job": round(requests / JOBS, 2)}
    finally:
        for d in daemons:
            d.stop()
        notary.stop()


def main() -> int:
    from service.emulator.seaweed import SeaweedServer
    from tests.support.postgres import PostgresServer

    seaweed, postgres = SeaweedServer(stop_timeout_seconds=1), PostgresServer(durable=True)
    seaweed.start()
    postgres.start()
    try:
        with tempfile.TemporaryDirectory(dir="/tmp") as folder:
            results = [_run(n, Path(folder) / f"run{n}", seaweed, postgres) for n in (1, 2, 3)]
    finally:
        postgres.stop()
        seaweed.stop()
    base = results[0]["jobs_per_minute"]
    for result in results:
        result["speed_up"] = round(result["jobs_per_minute"] / base, 2)
    json.dump(results, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
