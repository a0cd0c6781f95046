"""``off_loop``: a job's blocking file work never holds the shared thread pool, ends with the job,
and is bounded. The blocked calls here wait on an Event the test releases at the end."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from uploader.blocking import BlockingTimeout, off_loop
from uploader.source_file import allowed_roots, confine_to

BOUND = 20.0  # only bounds the test's own waits; never what is asserted


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at the end of each test: every call still blocked returns then."""
    event = threading.Event()
    yield event
    event.set()


def blocked(release: threading.Event,
            seen: list[threading.Event] | None = None) -> Callable[[threading.Event], str]:
    def call(stop: threading.Event) -> str:
        if seen is not None:
            seen.append(stop)
        release.wait()
        return "released"

    return call


async def test_stuck_calls_leave_the_shared_pool_free(release: threading.Event) -> None:
    stuck = [asyncio.create_task(off_loop(blocked(release), what=f"stuck {n}")) for n in range(40)]
    await asyncio.sleep(0)
    # 40 calls that never return would hold every worker of the loop's pool (at most 32)
    async with asyncio.timeout(BOUND):
        assert await asyncio.to_thread(lambda: "the pool still answers") == "the pool still answers"
    for task in stuck:
        task.cancel()
    await asyncio.gather(*stuck, return_exceptions=True)
    assert all(task.cancelled() for task in stuck)


async def test_cancelling_the_caller_returns_at_once_and_sets_stop(release: threading.Event) -> None:
    stops: list[threading.Event] = []
    started = asyncio.Event()
    loop = asyncio.get_running_loop()

    def call(stop: threading.Event) -> str:
        stops.append(stop)
        loop.call_soon_threadsafe(started.set)
        release.wait()
        return "released"

    task = asyncio.create_task(off_loop(call, what="stuck"))
    async with asyncio.timeout(BOUND):
        await started.wait()
    task.cancel()
    async with asyncio.timeout(BOUND):  # the call itself is still blocked: the caller is not
        with pytest.raises(asyncio.CancelledError):
            await task
    assert stops[0].is_set()


async def test_a_call_past_its_bound_is_abandoned_naming_it(release: threading.Event) -> None:
    stops: list[threading.Event] = []
    with pytest.raises(BlockingTimeout, match=r"^reading Game.pkg took longer than 0 s and was abandoned"):
        await off_loop(blocked(release, stops), what="reading Game.pkg", timeout_seconds=0.05)
    assert stops[0].is_set()


async def test_results_errors_and_the_confinement_reach_the_caller(tmp_path: Path) -> None:
    with confine_to([tmp_path]):
        roots = await off_loop(lambda _: allowed_roots(), what="roots")
    assert roots is not None and [root.name for root in roots] == [tmp_path.name]
    assert await off_loop(lambda _: allowed_roots(), what="roots") is None  # and only inside

    def fails(_: threading.Event) -> None:
        raise FileNotFoundError(2, "No such file or directory", "Game.pkg")

    with pytest.raises(FileNotFoundError, match=r"Game\.pkg"):
        await off_loop(fails, what="fails")
