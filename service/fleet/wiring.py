"""What ``notaryd serve`` builds differently on the fleet store (PostgreSQL): the job store, the
scheduler, the fleet's gauges. On the SQLite default it builds what it always did."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import aiohttp
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from service.daemon.execution import JobExecutor
from service.daemon.job_store import JobStore
from service.daemon.registry import JobRegistry
from service.daemon.scheduler import Scheduler
from service.daemon.slots import PartSlots
from service.fleet.budget import API_BURST, API_RATE_PER_SECOND, SharedBudget, api_budget_traces
from service.fleet.queue import Fleet, is_postgres
from service.fleet.scheduler import FencedJobStore, FleetScheduler
from service.settings import Settings
from uploader.database import Database
from uploader.postgres import open_database


async def job_store_for(db: Database, settings: Settings) -> JobStore:
    """The daemon's job store; on PostgreSQL one whose writes are fenced, on a connection of
    its own, so that renewing a lease never waits behind the parts' acknowledgements."""
    if not is_postgres(db):
        return await JobStore.open(db)
    own = await open_database(settings.database_path, settings.database_url)
    return FencedJobStore(await Fleet.open(own, settings.worker_name, lease_seconds=settings.lease_seconds))


def session_traces(db: Database, settings: Settings) -> list[aiohttp.TraceConfig]:
    """On the fleet store, the Notary API requests of every worker share one token bucket per
    team key (``budget``); on SQLite, none."""
    if not is_postgres(db):
        return []
    budget = SharedBudget(db, Fleet(db, settings.worker_name), f"notary-api:{settings.key_id or 'default'}",
                          rate=API_RATE_PER_SECOND, burst=API_BURST)
    return api_budget_traces(budget, settings.api_url)


def scheduler_for(settings: Settings, registry: JobRegistry, executor: JobExecutor, *,
                  part_slots: PartSlots, metrics: CollectorRegistry) -> Scheduler:
    store = registry.store
    if not isinstance(store, FencedJobStore):
        return Scheduler(registry, executor, part_slots=part_slots, max_jobs=settings.max_jobs)
    scheduler = FleetScheduler(registry, executor, part_slots=part_slots, max_jobs=settings.max_jobs,
                               fleet=store.fleet, store=store, roots=settings.allowed_roots)
    metrics.register(fleet_gauges(scheduler))
    return scheduler


def fleet_gauges(scheduler: Any) -> _FleetGauges:
    """The fleet's gauges, read from ``scheduler``'s ``queue_depth`` and ``live_workers``."""
    return _FleetGauges(scheduler)


class _FleetGauges:
    """``notaryd_queue_depth`` and ``notaryd_fleet_workers``, as of the last heartbeat."""

    def __init__(self, scheduler: Any) -> None:
        self._scheduler = scheduler

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("notaryd_queue_depth", "Unfinished jobs of the fleet no worker holds.",
                                value=self._scheduler.queue_depth)
        yield GaugeMetricFamily("notaryd_fleet_workers", "Workers with a live heartbeat.",
                                value=self._scheduler.live_workers)
