from __future__ import annotations

import asyncio

import pytest

from tests.support.clocks import ManualClock
from uploader.retry import Pace, Retrier, RetryPolicy, no_retry


def test_caps_grow_exponentially_then_flatten() -> None:
    policy = RetryPolicy(initial_delay_seconds=0.5, max_delay_seconds=30, multiplier=2)
    assert [policy.cap(n) for n in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert policy.cap(10_000) == 30  # no overflow


def test_throttling_backs_off_from_a_higher_start_than_a_reset() -> None:
    policy = RetryPolicy()
    assert [policy.cap(n) for n in range(3)] == [0.05, 0.1, 0.2]
    assert [policy.cap(n, throttled=True) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert policy.delay(0, throttled=True, uniform=lambda a, b: b) == 1


def test_full_jitter_draws_between_zero_and_cap() -> None:
    policy = RetryPolicy()
    seen: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        seen.append((low, high))
        return high

    assert policy.delay(3, uniform=uniform) == 0.4
    assert seen == [(0.0, 0.4)]


def test_retry_after_is_a_floor() -> None:
    policy = RetryPolicy()
    assert policy.delay(0, retry_after_seconds=20, uniform=lambda a, b: a) == 20


def test_attempt_bound() -> None:
    assert not RetryPolicy().gives_up_after(10**6)
    assert RetryPolicy(max_attempts=3).gives_up_after(3)
    assert not RetryPolicy(max_attempts=3).gives_up_after(2)


@pytest.mark.parametrize("kwargs", [{"initial_delay_seconds": -1}, {"multiplier": 0.5},
                                    {"throttled_initial_delay_seconds": 60},
                                    {"max_attempts": 0},
                                    {"initial_delay_seconds": 5, "max_delay_seconds": 1}])
def test_invalid_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_a_pace_grows_to_its_maximum() -> None:
    pace = Pace(10, 60, growth=1.5)
    assert [pace.interval(n) for n in range(6)] == [10, 15, 22.5, 33.75, 50.625, 60]
    assert pace.interval(10_000) == 60
    for bad in ({"first_seconds": 5, "max_seconds": 1}, {"first_seconds": 1, "max_seconds": 2,
                                                         "growth": 0.5},
                {"first_seconds": 1, "max_seconds": 2, "spread": 1.5}):
        with pytest.raises(ValueError):
            Pace(**bad)


def test_poll_asks_until_final_at_the_pace_and_backs_off_failures_on_their_own() -> None:
    """Answers are paced (shortened by the spread); a failure backs off by ``decide``, whose
    count restarts after each answer."""
    clock = ManualClock()
    draws: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        draws.append((low, high))
        return low

    script: list[object] = ["busy", OSError("reset"), OSError("reset"), "busy", OSError("reset"),
                            "done"]
    failures_seen: list[int] = []

    async def ask() -> str:
        step = script.pop(0)
        if isinstance(step, Exception):
            raise step
        return str(step)

    def decide(error: Exception, failures: int) -> float:
        failures_seen.append(failures)
        return 100.0 + failures

    retrier = Retrier(sleep=clock.sleep, uniform=uniform)
    answer = asyncio.run(retrier.poll(ask, lambda text: text == "done",
                                      Pace(10, 60, growth=2, spread=0.5), decide))
    assert answer == "done" and script == []
    assert failures_seen == [0, 1, 0]
    assert clock.slept == [5.0, 100.0, 101.0, 10.0, 100.0]  # 50 % of 10, then 50 % of 20
    assert draws == [(0.5, 1.0), (0.5, 1.0)]


def test_poll_ends_when_decide_gives_up() -> None:
    clock = ManualClock()

    async def ask() -> str:
        raise PermissionError("no")

    with pytest.raises(PermissionError):
        asyncio.run(Retrier(sleep=clock.sleep).poll(ask, bool, Pace(1, 1), no_retry))
    assert clock.slept == []
