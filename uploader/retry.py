"""Retry policy: an immutable value; time and randomness are injected by the caller.

Backoff is "full jitter" (https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/):
the n-th retry sleeps a uniform random time in ``[0, min(max_delay, initial * multiplier**n))``.

Two starting points, because failures mean different things: a reset connection, a timeout,
a stall or a 500 says nothing about load, so its caps start at 50 ms (0.05, 0.1, 0.2, ... 30 s)
and a lost part is re-sent almost at once; throttling (503 SlowDown, 429) asks us to slow down,
so its caps start at 1 s (1, 2, 4, 8, 16, 30 s), like botocore's standard mode.

There is no attempt cap for transient upload errors: the engine retries a part for as long as its
credentials are valid, because giving up on a 20 GB upload over a flaky link is the failure mode
this project exists to remove. ``max_attempts`` exists for callers that want a bound (tests, the
notary API client's one-shot calls).

``Retrier`` is the project's one retry loop: the engine (parts and single S3 calls), the notary
pipeline, the notary API client, the ticket lookup, the job-end notifier and the CLI's job
follower all run through it and differ only in their ``decide`` function, which looks at a
failure and says how long to wait before the next attempt, or re-raises (possibly a clearer
error) to stop. ``Retrier.poll`` is the same loop for asking again while an answer is not final
(a submission in progress, a lock someone else holds): the waits between answers follow a
``Pace`` (a growing interval, jittered down so that many pollers drift apart), the waits after
failures follow ``decide``. ``tests/test_retry_core.py`` fails on any other loop that waits.
"""

from __future__ import annotations

import asyncio
import inspect
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")
# decide(error, retry_number) -> seconds to wait before the next attempt; raise to stop. May be
# a coroutine function (the engine re-reads a part from disk to judge a BadDigest).
Decide = Callable[[Exception, int], "float | Awaitable[float]"]


@dataclass(frozen=True)
class RetryPolicy:
    initial_delay_seconds: float = 0.05
    throttled_initial_delay_seconds: float = 1.0
    max_delay_seconds: float = 30.0
    multiplier: float = 2.0
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        for initial in (self.initial_delay_seconds, self.throttled_initial_delay_seconds):
            if initial < 0 or self.max_delay_seconds < initial:
                raise ValueError("need 0 <= initial delays <= max_delay_seconds")
        if self.multiplier < 1:
            raise ValueError("multiplier must be >= 1")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1 or None")

    def cap(self, retry_number: int, *, throttled: bool = False) -> float:
        """Upper bound of the sleep before retry ``retry_number`` (0-based)."""
        # min() before the power would overflow for large retry numbers.
        exponent = min(retry_number, 64)
        initial = self.throttled_initial_delay_seconds if throttled else self.initial_delay_seconds
        return min(self.max_delay_seconds, initial * self.multiplier**exponent)

    def delay(
        self,
        retry_number: int,
        *,
        throttled: bool = False,
        retry_after_seconds: float | None = None,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> float:
        """Seconds to sleep before retry ``retry_number``; a server's Retry-After is a floor."""
        jittered = uniform(0.0, self.cap(retry_number, throttled=throttled))
        if retry_after_seconds is not None:
            return max(jittered, retry_after_seconds)
        return jittered

    def gives_up_after(self, attempts: int) -> bool:
        return self.max_attempts is not None and attempts >= self.max_attempts


@dataclass(frozen=True)
class Pace:
    """How often to ask again while an answer is not final: ``first_seconds``, times ``growth``
    after each answer, up to ``max_seconds``; each wait shortened by up to ``spread`` (0.2: a
    uniform 80 to 100 % of the interval)."""

    first_seconds: float
    max_seconds: float
    growth: float = 1.5
    spread: float = 0.2

    def __post_init__(self) -> None:
        if not 0 <= self.first_seconds <= self.max_seconds or self.growth < 1:
            raise ValueError("need 0 <= first_seconds <= max_seconds and growth >= 1")
        if not 0 <= self.spread <= 1:
            raise ValueError("spread must be between 0 and 1")

    def interval(self, answers: int) -> float:
        """The interval after answer ``answers`` (0-based), before the spread."""
        return RetryPolicy(self.first_seconds, self.first_seconds, self.max_seconds,
                           self.growth).cap(answers)


def no_retry(error: Exception, _retry_number: int) -> float:
    """A ``decide`` for calls whose failures end the wait (a poll of something local)."""
    raise error


class _NotFinal(Exception):
    """Inside ``Retrier.poll``: the answer was not final; ask again after the pace's wait."""


@dataclass(frozen=True)
class Retrier:
    """Runs an async call until it succeeds or ``decide`` gives up; time and randomness injected."""

    policy: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    uniform: Callable[[float, float], float] = random.uniform

    async def run(self, call: Callable[[], Awaitable[T]], decide: Decide) -> T:
        retry_number = 0
        while True:
            try:
                return await call()
            except Exception as error:  # decide() re-raises what it does not retry
                decided = decide(error, retry_number)
                delay = await decided if inspect.isawaitable(decided) else decided
            await self.sleep(delay)
            retry_number += 1

    async def poll(self, ask: Callable[[], Awaitable[T]], final: Callable[[T], bool],
                   pace: Pace, decide: Decide) -> T:
        """Ask until ``final(answer)``; returns that answer. Between answers the wait is
        ``pace``'s; after a failure it is what ``decide(error, n)`` says, ``n`` counting the
        failures since the last answer (so an answer resets the back-off)."""
        answers = failures = 0

        async def attempt() -> T:
            answer = await ask()
            if final(answer):
                return answer
            raise _NotFinal

        async def judge(error: Exception, _retry_number: int) -> float:
            nonlocal answers, failures
            if isinstance(error, _NotFinal):
                wait = pace.interval(answers) * self.uniform(1.0 - pace.spread, 1.0)
                answers, failures = answers + 1, 0
                return wait
            decided = decide(error, failures)
            failures += 1
            return await decided if inspect.isawaitable(decided) else decided

        return await self.run(attempt, judge)

    def delay(self, retry_number: int, *, throttled: bool = False,
              floor_seconds: float | None = None) -> float:
        """The policy's jittered back-off for this retry (a server's Retry-After as a floor)."""
        return self.policy.delay(retry_number, throttled=throttled,
                                 retry_after_seconds=floor_seconds, uniform=self.uniform)

    def gives_up_after(self, attempts: int) -> bool:
        return self.policy.gives_up_after(attempts)
