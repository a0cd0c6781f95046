from __future__ import annotations

import pytest

from uploader.retry import RetryPolicy


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
