"""A scripted stand-in for the notary pipeline, for scheduler/API tests that need no Apple.

``FakeRunner`` emits the same events as the real pipeline, in the same order, and really uses the
shared ``PartSlots`` for its parts, so limits, fairness, cancellation and shutdown behave as they
would. What it does is chosen by the archive's file name:

* contains ``invalid`` / ``rejected``: ends with that notary status
* contains ``boom``: raises a NotarydError while uploading
* anything else: Accepted

Timing comes from ``FakeScript`` (or, in a daemon subprocess, ``FAKE_PARTS``,
``FAKE_PART_BYTES``, ``FAKE_PART_SECONDS``, ``FAKE_WAIT_SECONDS`` in the environment).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from service.daemon.broker import Broker
from service.daemon.execution import JobExecutor, JobRunner, RunnerFactory, Shared
from service.daemon.flusher import Flusher
from service.daemon.job_store import JobStore
from service.daemon.jobs import Job
from service.daemon.metrics import DaemonMetrics
from service.daemon.registry import JobRegistry
from service.daemon.scheduler import Scheduler
from service.daemon.slots import PartSlots
from service.settings import Settings
from uploader.errors import PermanentUploadError
from uploader.events import (
    BytesSent,
    CredentialsIssued,
    Emitter,
    HashProgress,
    Hook,
    NotaryRequestDone,
    NotaryStageChanged,
    PartAcknowledged,
    PartRetried,
    RetryReason,
    UploadStateChanged,
)
from uploader.lifecycle import NotaryStage, UploadState
from uploader.notary.pipeline import NotarizeOutcome, NotarizeRequest


@dataclass
class FakeScript:
    parts: int = 4
    part_bytes: int = 256 * 1024
    part_seconds: float = 0.05
    parts_parallel: int = 2
    wait_seconds: float = 0.05
    chunks_per_part: int = 4
    # When given, every part waits for it after sending its bytes and before S3 acknowledges
    # it: a test holds parts in flight for as long as it needs, with no timing involved.
    gate: asyncio.Event | None = None

    @classmethod
    def from_env(cls) -> FakeScript:
        env = os.environ
        return cls(
            parts=int(env.get("FAKE_PARTS", cls.parts)),
            part_bytes=int(env.get("FAKE_PART_BYTES", cls.part_bytes)),
            part_seconds=float(env.get("FAKE_PART_SECONDS", cls.part_seconds)),
            wait_seconds=float(env.get("FAKE_WAIT_SECONDS", cls.wait_seconds)),
        )


@dataclass
class FakeRecord:
    """What the fakes did, for assertions; ``until`` waits for a condition on it."""

    started: list[Path] = field(default_factory=list)
    aborted: list[Path] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    part_order: list[str] = field(default_factory=list)  # job file name per part started
    running: int = 0  # runs in progress
    max_running: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def touch(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def until(self, condition: Callable[[], bool], timeout_seconds: float = 10.0) -> None:
        """Wait until ``condition()`` holds; checked after every change the fakes make."""
        async with asyncio.timeout(timeout_seconds):
            while not condition():
                await self._changed.wait()


class FakeRunner:
    def __init__(
        self,
        hooks: Sequence[Hook],
        part_slots: PartSlots,
        script: FakeScript,
        record: FakeRecord,
        log_dir: Path,
    ) -> None:
        self._emit = Emitter(hooks)
        self._slots = part_slots
        self._script = script
        self._record = record
        self._log_dir = log_dir

    async def run(self, request: NotarizeRequest) -> NotarizeOutcome:
        self._record.running += 1
        self._record.max_running = max(self._record.max_running, self._record.running)
        try:
            return await self._run(request)
        finally:
            self._record.running -= 1
            self._record.touch()

    async def _run(self, request: NotarizeRequest) -> NotarizeOutcome:
        s, path = self._script, request.path
        target = str(path)
        self._record.started.append(path)
        self._record.touch()
        submission_id = "sub-" + hashlib.sha256(target.encode()).hexdigest()[:16]
        total = s.parts * s.part_bytes
        if not request.skip_preflight:
            self._emit(NotaryStageChanged(target, NotaryStage.PREFLIGHT))
        self._emit(NotaryStageChanged(target, NotaryStage.HASHING))
        self._emit(HashProgress(target, total // 2, total))
        self._emit(HashProgress(target, total, total))
        self._emit(NotaryStageChanged(target, NotaryStage.SUBMITTING))
        self._emit(NotaryRequestDone("submit", "200"))
        submitted_at = time.time()
        self._emit(CredentialsIssued(target, submitted_at + 12 * 3600))
        self._emit(NotaryStageChanged(target, NotaryStage.UPLOADING, submission_id, "In Progress", submitted_at))
        self._emit(UploadStateChanged(target, UploadState.UPLOADING, total, 0))
        queue: asyncio.Queue[int] = asyncio.Queue()
        for number in range(1, s.parts + 1):
            queue.put_nowait(number)
        async with asyncio.TaskGroup() as tg:
            for _ in range(s.parts_parallel):
                tg.create_task(self._worker(queue, target, path.name))
        self._emit(UploadStateChanged(target, UploadState.COMPLETED, total, total))
        self._emit(NotaryStageChanged(target, NotaryStage.WAITING, submission_id, "In Progress", submitted_at))
        await asyncio.sleep(s.wait_seconds)
        self._emit(NotaryRequestDone("status", "200"))
        status = "Accepted"
        if "invalid" in path.name:
            status = "Invalid"
        elif "rejected" in path.name:
            status = "Rejected"
        self._emit(NotaryStageChanged(target, NotaryStage.FETCHING_LOG, submission_id, status))
        self._log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self._log_dir / f"{submission_id}.json"
        issues = [] if status == "Accepted" else [
            {"severity": "error", "code": None, "path": f"{path.name}/App", "message": "The binary is not signed.",
             "docUrl": None, "architecture": "arm64"}
        ]
        log_path.write_text(json.dumps({
            "jobId": submission_id, "status": status, "statusSummary": "fake", "archiveFilename": path.name,
            "issues": issues or None, "ticketContents": None,
        }))
        self._emit(NotaryRequestDone("logs", "200"))
        self._emit(NotaryStageChanged(target, NotaryStage.DONE, submission_id, status))
        return NotarizeOutcome(path, submission_id, status, log_path, "")

    async def _worker(self, queue: asyncio.Queue[int], target: str, name: str) -> None:
        s = self._script
        while not queue.empty():
            number = queue.get_nowait()
            async with self._slots:
                self._record.part_order.append(name)
                self._record.in_flight += 1
                self._record.max_in_flight = max(self._record.max_in_flight, self._record.in_flight)
                self._record.touch()
                try:
                    if "boom" in name and number == 2:
                        self._emit(PartRetried(target, number, RetryReason.SERVER_ERROR, 1))
                        raise PermanentUploadError(f"{name}: part {number}: AccessDenied (fake)")
                    chunk = s.part_bytes // s.chunks_per_part
                    for _ in range(s.chunks_per_part):
                        await asyncio.sleep(s.part_seconds / s.chunks_per_part)
                        self._emit(BytesSent(target, chunk, resent=False))
                    if s.gate is not None:
                        await s.gate.wait()
                    self._emit(PartAcknowledged(target, number, s.part_bytes))
                finally:
                    self._record.in_flight -= 1
                    self._record.touch()

    async def cancel(self, path: Path, *, keep_archive: bool = False) -> None:
        self._record.aborted.append(path)
        self._record.touch()


def fake_factory(
    part_slots: PartSlots, script: FakeScript, record: FakeRecord, log_dir: Path
) -> RunnerFactory:
    def make(hooks: Sequence[Hook]) -> JobRunner:
        return FakeRunner(hooks, part_slots, script, record, log_dir)

    return make


def fake_scheduler(
    store: JobStore,
    factory: RunnerFactory,
    broker: Broker,
    part_slots: PartSlots,
    *,
    max_jobs: int,
    flush_interval_seconds: float = 0.05,
    metrics: DaemonMetrics | None = None,
    on_job_end: Callable[[Job], None] | None = None,
) -> Scheduler:
    """A scheduler wired the way ``notaryd serve`` wires it, without the HTTP parts."""
    registry = JobRegistry(store)
    executor = JobExecutor(
        factory,
        Flusher(store, broker, interval_seconds=flush_interval_seconds),
        metrics=metrics if metrics is not None else DaemonMetrics(jobs=registry.jobs),
        on_job_end=on_job_end,
    )
    return Scheduler(registry, executor, part_slots=part_slots, max_jobs=max_jobs)


def build_fake_factory(settings: Settings, shared: Shared) -> RunnerFactory:
    """For ``serve(build_runner_factory=...)`` in a daemon subprocess."""
    return fake_factory(shared.part_slots, FakeScript.from_env(), FakeRecord(), settings.state_dir / "logs")

