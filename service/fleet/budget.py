"""The team key's Notary API request budget, shared by the fleet: a token bucket in one row.

``take`` refills the bucket by ``rate`` tokens a second up to ``burst`` and takes one token, in
one statement (no read-then-write race between workers); when the bucket is empty it says how
long until the next token. Times are the database's clock on PostgreSQL (``Fleet.now``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import aiohttp

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


# The team key's request rate the fleet keeps to, together (Apple does not publish one; these
# stay well under what its 429s show). A worker alone is held back by the client's own back-off.
API_RATE_PER_SECOND = 10.0
API_BURST = 20.0


def api_budget_traces(budget: SharedBudget, api_url: str,
                      sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> list[aiohttp.TraceConfig]:
    """Trace hooks for the jobs' shared HTTP session: every request to the Notary API (not the
    log downloads or ticket lookups) first takes a token of the fleet's budget."""
    host = urlsplit(api_url).hostname

    async def before(_session: aiohttp.ClientSession, _context: object,
                     params: aiohttp.TraceRequestStartParams) -> None:
        if params.url.host == host:
            await budget.acquire(sleep)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(before)
    return [trace]
