"""The shared bandwidth cap, on a fake clock: rate, burst, and arrival-order fairness."""

from __future__ import annotations

import pytest

from tests.support.clocks import ManualClock
from uploader.throttle import Throttle


def test_the_burst_is_free_then_each_caller_waits_for_its_bytes() -> None:
    clock = ManualClock()
    throttle = Throttle(1000, burst_bytes=500, clock=clock, sleep=clock.record)
    throttle.acquire_blocking(500)
    assert clock.slept == []
    throttle.acquire_blocking(250)
    assert clock.slept == [0.25]


def test_callers_are_served_in_arrival_order_and_the_rate_holds() -> None:
    """Three streams asking at once: each waits for everything taken before it."""
    clock = ManualClock()
    throttle = Throttle(1000, burst_bytes=100, clock=clock, sleep=clock.record)
    for _ in range(3):
        throttle.acquire_blocking(100)
    assert clock.slept == pytest.approx([0.1, 0.2])
    clock.now = 0.2  # every debt repaid: 300 bytes in 0.2 s after a 100-byte burst
    throttle.acquire_blocking(100)
    assert clock.slept[-1] == pytest.approx(0.1)


def test_idle_time_refills_up_to_the_burst_only() -> None:
    clock = ManualClock()
    throttle = Throttle(1000, burst_bytes=200, clock=clock, sleep=clock.record)
    throttle.acquire_blocking(200)
    clock.now = 100.0  # a long pause does not bank more than the burst
    throttle.acquire_blocking(200)
    throttle.acquire_blocking(100)
    assert clock.slept == pytest.approx([0.1])


def test_fractional_rates_and_a_nonpositive_rate() -> None:
    clock = ManualClock()
    throttle = Throttle(1.5e6, burst_bytes=1.5e5, clock=clock, sleep=clock.record)
    throttle.acquire_blocking(300_000)
    assert clock.slept == pytest.approx([0.1])
    with pytest.raises(ValueError, match="positive"):
        Throttle(0)


async def test_acquire_on_the_event_loop_waits_without_blocking_it() -> None:
    clock = ManualClock()
    waited: list[float] = []

    async def async_sleep(seconds: float) -> None:
        waited.append(seconds)

    throttle = Throttle(
        1000, burst_bytes=100, clock=clock, sleep=clock.record, async_sleep=async_sleep
    )
    await throttle.acquire(100)  # within the burst: no wait at all
    await throttle.acquire(100)
    throttle.acquire_blocking(100)  # one bucket for tasks and worker threads
    assert waited == pytest.approx([0.1]) and clock.slept == pytest.approx([0.2])
