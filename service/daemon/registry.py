"""The jobs this daemon process knows, in memory, over the stored history (``JobStore``).

Created first at start-up and handed to whoever needs to read the jobs (the scheduler, the
metrics' scrape-time gauges): the live ``Job`` objects, whose ``progress`` is current, win over
their stored copies. Memory stays bounded however many jobs a long-lived daemon sees: beyond
``max_finished`` finished jobs the oldest are let go (the store still has them). Unfinished jobs
are never let go, so ``notaryd_jobs{state}`` (unfinished jobs only) stays exact.
"""

from __future__ import annotations

from pathlib import Path

from .job_store import JobStore
from .jobs import Job, JobNotFound


class JobRegistry:
    def __init__(self, store: JobStore, *, max_finished: int = 1000) -> None:
        self.store = store
        self.max_finished = max_finished
        self._live: dict[str, Job] = {}  # in the order they were added

    def add(self, job: Job) -> None:
        self._live[job.id] = job
        finished = [j for j in self._live.values() if j.terminal]
        for old in finished[: max(0, len(finished) - self.max_finished)]:
            del self._live[old.id]

    def remove(self, job: Job) -> None:
        self._live.pop(job.id, None)

    def jobs(self) -> list[Job]:
        """The jobs this process holds: every unfinished one, the latest finished ones."""
        return list(self._live.values())

    def unfinished_at(self, path: Path) -> Job | None:
        return next((j for j in self._live.values() if j.path == path and not j.terminal), None)

    async def get(self, job_id: str) -> Job:
        job = self._live.get(job_id) or await self.store.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    async def recent(self, limit: int = 200) -> list[Job]:
        """Newest first: the live jobs merged over the stored history."""
        stored = await self.store.recent(limit)
        merged = {job.id: self._live.get(job.id, job) for job in stored}
        for job in self._live.values():
            merged.setdefault(job.id, job)
        return sorted(merged.values(), key=lambda j: (j.created_at, j.id), reverse=True)[:limit]

    async def log_path(self, job: Job) -> Path | None:
        if job.log_path is not None:
            return job.log_path
        if job.submission_id is None:
            return None
        return await self.store.log_path(job.submission_id)
