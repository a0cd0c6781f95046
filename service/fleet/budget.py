"""The team key's Notary API request budget, shared by the fleet: a token bucket in one row.

``take`` refills the bucket by ``rate`` tokens a second up to ``burst`` and takes one token, in
one statement (no read-then-write race between workers); when the bucket is empty it says how
long until the next token. Times are the database's clock on PostgreSQL (``Fleet.now``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from service.fleet.queue import Fleet
from uploader.database import Database


class SharedBudget:
    def __init__(self, db: Database, fleet: Fleet, name: str, *, rate: float, burst: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a budget needs rate > 0 and burst >= 1")
        self._db = db
        self._fleet = fleet
        self.name = name
        self.rate = rate
        self.burst = burst

    async def take(self) -> float:
        """Take one token: 0.0 if taken, else the seconds until one is due (nothing taken)."""
        now = await self._fleet.now()
        await self._db.execute(
            "INSERT OR IGNORE INTO rate_buckets (name, tokens, updated_at) VALUES (?, ?, ?)",
            (self.name, self.burst, now))
        refilled = "MIN(?, tokens + ? - ? * updated_at)"  # burst, rate * now, rate
        taken = await self._db.execute(
            f"UPDATE rate_buckets SET tokens = {refilled} - 1, updated_at = ?"
            f" WHERE name = ? AND {refilled} >= 1",
            (self.burst, self.rate * now, self.rate, now, self.name,
             self.burst, self.rate * now, self.rate))
        if taken == 1:
            return 0.0
        row = await self._db.fetchone("SELECT tokens, updated_at FROM rate_buckets WHERE name = ?",
                                      (self.name,))
        assert row is not None  # inserted above
        tokens = min(self.burst, float(row["tokens"]) + self.rate * (now - float(row["updated_at"])))
        return max((1 - tokens) / self.rate, 0.001)

    async def acquire(self, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        """Wait for a token and take it (call before each Notary API request)."""
        while (wait := await self.take()) > 0:
            await sleep(wait)
