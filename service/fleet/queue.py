"""Claims, leases and fencing over the shared ``jobs`` table (see the package doc).

A claim is a short transaction: lock one unfinished job whose lease is absent or expired
(``FOR UPDATE OF j SKIP LOCKED`` on PostgreSQL: workers polling together never wait on each
other), then write its lease with the generation bumped. The holder renews every
``lease_seconds / 3``; a write for the job goes through ``fenced``, which first touches the lease
row with the generation it claimed: zero rows means another worker took the job over, and the
caller must stop touching it (``LeaseLost``) before its next S3 call. ``Fleet.fence`` fences the library's own writes and S3
calls for a job the same way (``LeaseFence``, handed to the run by ``uploader.fence.fenced_by``). Times are the database's
clock on PostgreSQL (hosts' clocks differ), the local clock on SQLite (one host).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from service.daemon import migrations as daemon_migrations
from service.daemon.job_states import JobOutcome
from service.fleet import migrations, names
from uploader import errors
from uploader.database import Database, StateError, Transaction
from uploader.source_file import SharedIdentity

log = logging.getLogger("notaryd.fleet")

DEFAULT_LEASE_SECONDS = names.DEFAULT_LEASE_SECONDS
_CANDIDATES = 32
_CHANNEL = "notaryd_jobs"
_UNFINISHED = f"j.state NOT IN ({', '.join('?' for _ in JobOutcome)})"
_ENDED = tuple(str(outcome) for outcome in JobOutcome)


@dataclass(frozen=True)
class Lease:
    job: str
    path: Path
    worker: str
    generation: int
    lease_until: float


class LeaseLost(errors.LeaseLost):
    """The library's ``LeaseLost`` (a fenced run stops), naming the job and the worker."""

    def __init__(self, lease: Lease) -> None:
        super().__init__(f"job {lease.job}: this worker ({lease.worker}) lost its lease "
                         f"(generation {lease.generation}); another worker has taken the job over")
        self.lease = lease


class LeaseFence:
    """A job's run is fenced by its lease (``uploader.fence``): each write of the library's
    stores and each S3 call of the engine first checks, in the write's own transaction, that
    this worker still holds generation G of the job; the row is share-locked until that
    transaction commits, so a takeover waits for it and the next check fails."""

    def __init__(self, fleet: Fleet, lease: Lease) -> None:
        self._fleet, self._lease = fleet, lease

    async def check(self, tx: Transaction) -> None:
        lease, share = self._lease, " FOR SHARE" if self._fleet.is_pg else ""
        held = await tx.fetchone(
            f"SELECT 1 AS held FROM fleet_leases WHERE job = ? AND generation = ? AND worker = ?{share}",
            (lease.job, lease.generation, lease.worker))
        if held is None:
            raise LeaseLost(lease)

    async def recorded_identity(self) -> SharedIdentity | None:
        return await self._fleet.identity(self._lease.job)

    async def record_identity(self, identity: SharedIdentity) -> None:
        await self._fleet.record_identity(self._lease, identity)


def is_postgres(db: Database) -> bool:
    return getattr(db, "engine", "sqlite") == "postgresql"


class Fleet:
    """One worker's view of the fleet. Make one with ``await Fleet.open(db, worker)``."""

    def __init__(self, db: Database, worker: str, *, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        self._db = db
        self.db = db
        self.worker = worker
        self.lease_seconds = lease_seconds
        self._pg = self.is_pg = is_postgres(db)

    @classmethod
    async def open(cls, db: Database, worker: str, *, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> Fleet:
        await db.require(daemon_migrations.SCHEMA)
        await db.require(migrations.SCHEMA)
        return cls(db, worker, lease_seconds=lease_seconds)

    async def now(self) -> float:
        """Unix seconds by the database's clock (PostgreSQL), else this host's."""
        if not self._pg:
            return time.time()
        row = await self._db.fetchone("SELECT EXTRACT(EPOCH FROM clock_timestamp())::float8 AS now")
        assert row is not None
        return float(row["now"])

    # -- claims and leases ----------------------------------------------------------------

    async def claim(self, may_take: Callable[[Path], bool]) -> Lease | None:
        """Take the oldest unfinished job nobody holds a live lease on and that ``may_take``
        (run off the event loop: it opens the file) accepts; None if there is none."""
        now = await self.now()
        rows = await self._db.fetchall(
            "SELECT j.id, j.path FROM jobs j LEFT JOIN fleet_leases l ON l.job = j.id"
            f" WHERE {_UNFINISHED} AND (l.job IS NULL OR l.lease_until < ?)"
            f" ORDER BY j.created_at, j.id LIMIT {_CANDIDATES}", (*_ENDED, now))
        for row in rows:
            path = Path(row["path"])
            if await asyncio.to_thread(may_take, path) and (lease := await self.take(row["id"], path)):
                return lease
        return None

    async def take(self, job: str, path: Path) -> Lease | None:
        """Claim this one job if it is unfinished and nobody holds a live lease on it."""
        lock = " FOR UPDATE OF j SKIP LOCKED" if self._pg else ""
        async with self._db.transaction() as tx:
            now = await self._tx_now(tx)
            free = await tx.fetchone(
                "SELECT j.id FROM jobs j LEFT JOIN fleet_leases l ON l.job = j.id"
                f" WHERE j.id = ? AND {_UNFINISHED} AND (l.job IS NULL OR l.lease_until < ?){lock}",
                (job, *_ENDED, now))
            if free is None:
                return None  # taken (or locked) by another worker meanwhile, or ended
            until = now + self.lease_seconds
            row = await tx.fetchone(
                "INSERT INTO fleet_leases (job, worker, generation, lease_until) VALUES (?, ?, 1, ?)"
                " ON CONFLICT (job) DO UPDATE SET worker = excluded.worker,"
                " generation = fleet_leases.generation + 1, lease_until = excluded.lease_until"
                " WHERE fleet_leases.lease_until < ? RETURNING generation",
                (job, self.worker, until, now))
            if row is None:
                return None
            return Lease(job, path, self.worker, int(row["generation"]), until)

    async def _tx_now(self, tx: Transaction) -> float:
        if not self._pg:
            return time.time()
        row = await tx.fetchone("SELECT EXTRACT(EPOCH FROM clock_timestamp())::float8 AS now")
        assert row is not None
        return float(row["now"])

    async def renew(self, lease: Lease) -> Lease:
        """The lease extended by ``lease_seconds``; ``LeaseLost`` if another worker took it."""
        async with self.fenced(lease) as tx:
            until = await self._tx_now(tx) + self.lease_seconds
            await tx.execute("UPDATE fleet_leases SET lease_until = ? WHERE job = ?", (until, lease.job))
        return Lease(lease.job, lease.path, lease.worker, lease.generation, until)

    @contextlib.asynccontextmanager
    async def fenced(self, lease: Lease) -> AsyncIterator[Transaction]:
        """A transaction that holds ``lease`` (its row locked until commit); ``LeaseLost`` if
        the generation has moved on. Every write a worker makes for a job goes through one."""
        async with self._db.transaction() as tx:
            held = await tx.execute(
                "UPDATE fleet_leases SET worker = worker WHERE job = ? AND generation = ? AND worker = ?",
                (lease.job, lease.generation, lease.worker))
            if held != 1:
                raise LeaseLost(lease)
            yield tx

    async def record_identity(self, lease: Lease, identity: SharedIdentity) -> None:
        """The file's identity across hosts (inode numbers differ between NFS/SMB clients)."""
        async with self.fenced(lease) as tx:
            await tx.execute("UPDATE fleet_leases SET size = ?, mtime_ns = ?, sha256 = ? WHERE job = ?",
                             (identity.size, identity.mtime_ns, identity.sha256, lease.job))

    async def identity(self, job: str) -> SharedIdentity | None:
        row = await self._db.fetchone(
            "SELECT size, mtime_ns, sha256 FROM fleet_leases WHERE job = ? AND sha256 IS NOT NULL", (job,))
        return None if row is None else SharedIdentity(int(row["size"]), int(row["mtime_ns"]), str(row["sha256"]))

    def fence(self, lease: Lease) -> LeaseFence:
        """The ``uploader.fence.Fence`` of a job this worker runs under ``lease``."""
        return LeaseFence(self, lease)

    async def let_go(self, lease: Lease) -> None:
        """This worker stops the job without ending it (shutdown): another may claim it at once."""
        async with self.fenced(lease) as tx:
            await tx.execute("UPDATE fleet_leases SET lease_until = 0 WHERE job = ?", (lease.job,))

    async def release(self, lease: Lease) -> None:
        """The job ended: its lease goes (only if still this worker's)."""
        with contextlib.suppress(LeaseLost):
            async with self.fenced(lease) as tx:
                await tx.execute("DELETE FROM fleet_leases WHERE job = ?", (lease.job,))

    async def keep(self, lease: Lease, *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> LeaseLost:
        """Renew ``lease`` every ``lease_seconds / 3`` until it is lost; returns why (run it as
        a task beside the job and cancel it when the job ends). A lease this worker could not
        renew before it ran out (the store unreachable) counts as lost: another worker may
        have it by then."""
        margin = self.lease_seconds / 6  # for the clocks' rates and the claim's own round trip
        deadline = time.monotonic() + self.lease_seconds - margin
        while True:
            await sleep(self.lease_seconds / 3)
            asked = time.monotonic()
            try:
                async with asyncio.timeout(max(deadline - asked, 0.0)):
                    lease = await self.renew(lease)
                deadline = asked + self.lease_seconds - margin
            except LeaseLost as lost:
                return lost
            except (StateError, TimeoutError) as error:
                if time.monotonic() >= deadline:
                    return LeaseLost(lease)
                log.warning("lease of job %s not renewed: %s", lease.job, error)

    # -- waking idle workers ---------------------------------------------------------------

    async def listen(self, wake: Callable[[], None]) -> None:
        """``wake()`` whenever a job is queued on any worker (PostgreSQL ``LISTEN``)."""
        if self._pg:
            await self._db.listen(_CHANNEL, lambda _payload: wake())  # type: ignore[attr-defined]

    async def announce(self) -> None:
        """Tell idle workers a job was queued (they poll as well: a lost NOTIFY only delays)."""
        if self._pg:
            await self._db.execute(f"SELECT pg_notify('{_CHANNEL}', '')")

    # -- what the fleet looks like --------------------------------------------------------

    async def heartbeat(self) -> None:
        now = await self.now()
        await self._db.execute(
            "INSERT INTO fleet_workers (name, started_at, heartbeat_at) VALUES (?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
            (self.worker, now, now))

    async def live_workers(self) -> int:
        """Workers whose heartbeat is younger than a lease (``notaryd_fleet_workers``)."""
        now = await self.now()
        row = await self._db.fetchone("SELECT count(*) AS n FROM fleet_workers WHERE heartbeat_at >= ?",
                                      (now - self.lease_seconds,))
        return int(row["n"]) if row is not None else 0

    async def queue_depth(self) -> int:
        """Unfinished jobs no worker holds a live lease on (``notaryd_queue_depth``)."""
        now = await self.now()
        row = await self._db.fetchone(
            "SELECT count(*) AS n FROM jobs j LEFT JOIN fleet_leases l ON l.job = j.id"
            f" WHERE {_UNFINISHED} AND (l.job IS NULL OR l.lease_until < ?)", (*_ENDED, now))
        return int(row["n"]) if row is not None else 0

    async def holders(self) -> dict[str, str]:
        """Job id -> the worker holding a lease on it (the ``worker`` column of the job list)."""
        rows = await self._db.fetchall("SELECT job, worker FROM fleet_leases")
        return {str(row["job"]): str(row["worker"]) for row in rows}
