"""Fan-out of job snapshots to server-sent-event subscribers.

A subscriber's undelivered snapshots are coalesced: a newer snapshot of a job replaces the
pending one when the job's state has not changed in between. A slow client therefore sees fewer
intermediate progress updates, but every state change, in order, and always the latest
progress. Memory stays bounded by jobs x states, never by how far behind the client is.
Single event-loop thread; not thread-safe.

The number of subscriptions is capped (``max_subscribers``, NOTARYD_MAX_EVENT_STREAMS): each one
holds a connection open for as long as its client likes, so without a cap a client with the token
could hold every connection the daemon allows and lock every other client out. The one past the
cap is refused (``StreamsFull``; the API answers 429) and nothing is subscribed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from .snapshot import JobSnapshot


class Subscription:
    def __init__(self, job_id: str | None) -> None:
        self.job_id = job_id
        self._pending: list[JobSnapshot] = []
        self._last_pending: dict[str, int] = {}  # job id -> index of its newest pending snapshot
        self._ready = asyncio.Event()
        self.closed = False

    def offer(self, snapshot: JobSnapshot) -> None:
        if self.job_id is not None and snapshot.id != self.job_id:
            return
        index = self._last_pending.get(snapshot.id)
        if index is not None and self._pending[index].state is snapshot.state:
            self._pending[index] = snapshot  # same state: only the progress moved
        else:
            self._last_pending[snapshot.id] = len(self._pending)
            self._pending.append(snapshot)
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    async def next_batch(self, wait_seconds: float) -> list[JobSnapshot]:
        """The snapshots pending now, waiting up to ``wait_seconds``; [] on timeout or close."""
        if not self._pending and not self.closed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_seconds):
                    await self._ready.wait()
        self._ready.clear()
        batch, self._pending = self._pending, []
        self._last_pending.clear()
        return batch


MAX_EVENT_STREAMS = 64  # the default cap: far more than people watching, far under the connections


class StreamsFull(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"{limit} event streams are open, the most this daemon allows")
        self.limit = limit


class Broker:
    def __init__(self, max_subscribers: int = MAX_EVENT_STREAMS) -> None:
        if max_subscribers < 1:
            raise ValueError(f"max_subscribers must be at least 1, got {max_subscribers}")
        self.max_subscribers = max_subscribers
        self._subscriptions: set[Subscription] = set()

    def publish(self, snapshot: JobSnapshot) -> None:
        for sub in self._subscriptions:
            sub.offer(snapshot)

    def subscribe(self, job_id: str | None = None) -> contextlib.AbstractContextManager[Subscription]:
        """A subscription for a ``with`` block; ``StreamsFull`` at once when ``max_subscribers``
        are open."""
        if len(self._subscriptions) >= self.max_subscribers:
            raise StreamsFull(self.max_subscribers)
        return self._subscribed(Subscription(job_id))

    @contextlib.contextmanager
    def _subscribed(self, sub: Subscription) -> Iterator[Subscription]:
        self._subscriptions.add(sub)
        try:
            yield sub
        finally:
            self._subscriptions.discard(sub)

    def close_all(self) -> None:
        """Daemon shutdown: end every stream so their handlers return."""
        for sub in self._subscriptions:
            sub.close()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)


