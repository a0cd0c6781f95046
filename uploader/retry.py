"""Retry policy: an immutable value; time and randomness are injected by the caller.

Backoff is "full jitter" (https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/):
the n-th retry sleeps a uniform random time in ``[0, min(max_delay, initial * multiplier**n))``.
With the defaults the caps run 0.5, 1, 2, 4, 8, 16, 30, 30, ... seconds.

There is no attempt cap for transient upload errors: the engine retries a part for as long as its
credentials are valid, because giving up on a 20 GB upload over a flaky link is the failure mode
this project exists to remove. ``max_attempts`` exists for callers that want a bound (tests, the
notary API client's one-shot calls).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    initial_delay_seconds: float = 0.5
    max_delay_seconds: float = 30.0
    multiplier: float = 2.0
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if self.initial_delay_seconds < 0 or self.max_delay_seconds < self.initial_delay_seconds:
            raise ValueError("need 0 <= initial_delay_seconds <= max_delay_seconds")
        if self.multiplier < 1:
            raise ValueError("multiplier must be >= 1")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1 or None")

    def cap(self, retry_number: int) -> float:
        """Upper bound of the sleep before retry ``retry_number`` (0-based)."""
        # min() before the power would overflow for large retry numbers.
        exponent = min(retry_number, 64)
        return min(self.max_delay_seconds, self.initial_delay_seconds * self.multiplier**exponent)

    def delay(
        self,
        retry_number: int,
        *,
        retry_after_seconds: float | None = None,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> float:
        """Seconds to sleep before retry ``retry_number``; a server's Retry-After is a floor."""
        jittered = uniform(0.0, self.cap(retry_number))
        if retry_after_seconds is not None:
            return max(jittered, retry_after_seconds)
        return jittered

    def gives_up_after(self, attempts: int) -> bool:
        return self.max_attempts is not None and attempts >= self.max_attempts
