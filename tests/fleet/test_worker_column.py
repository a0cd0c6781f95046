"""`notaryd jobs` names each job's fleet worker, and only for a fleet (the table without one is
what it always was)."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from service.client.display import jobs_table
from service.daemon.job_states import QUEUED
from service.daemon.jobs import Job
from service.daemon.snapshot import JobSnapshot


def rendered(*snapshots: JobSnapshot) -> str:
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(jobs_table(snapshots))
    return out.getvalue()


def snapshot(job_id: str) -> JobSnapshot:
    return Job(id=job_id, path=Path(f"/builds/{job_id}.zip"), name=None, webhook=None, skip_preflight=False,
               state=QUEUED, created_at=1.0, updated_at=1.0).snapshot()


def test_the_worker_column_appears_for_a_fleet_only() -> None:
    alone = rendered(snapshot("a"), snapshot("b"))
    assert "WORKER" not in alone.splitlines()[0]
    fleet = rendered(replace(snapshot("a"), worker="mac-mini-3"), snapshot("b"))
    header, first, second = fleet.splitlines()[:3]
    assert "WORKER" in header and "mac-mini-3" in first and " - " in second
    assert JobSnapshot.from_json(replace(snapshot("a"), worker="w1").to_json()).worker == "w1"
